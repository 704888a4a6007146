"""Lifecycle pages without the engine: permissions, forms, htmx, the job follow page."""

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from jobs.models import Job
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = pytest.mark.django_db

HEX = "ab" * 32


@pytest.fixture
def mirror():
    EngineStatus.objects.create(last_success_at=timezone.now(), volume_plugins=["local", "rexray"])
    free = Volume.objects.create(name="free", size_bytes=1000)
    used = Volume.objects.create(name="used", container_count=1, size_bytes=50)
    Volume.objects.create(name="keep", labels={"cargohold.protect": "true"})
    Volume.objects.create(name=HEX, anonymous=True, size_bytes=2000)
    Volume.objects.create(name="cd" * 32, anonymous=True, size_bytes=None)
    Volume.objects.create(name="ef" * 32, anonymous=True, labels={"cargohold.protect": "true"}, size_bytes=7)
    Volume.objects.create(name="gone", gone_since=timezone.now())
    stopped = Container.objects.create(engine_id="c" * 64, name="old-job", state="exited")
    Mount.objects.create(container=stopped, kind="volume", volume=used, source="used", destination="/data")
    return free


@pytest.fixture
def lifecycle_job(make_user):
    return Job.objects.create(kind="volume_create", target="x1", status=Job.Status.RUNNING, params={})


def _urls(job_id):
    return [
        ("get", "/volumes/new/"),
        ("post", "/volumes/new/"),
        ("get", "/volumes/prune/"),
        ("post", "/volumes/prune/"),
        ("get", "/volumes/free/remove/"),
        ("post", "/volumes/free/remove/"),
        ("get", f"/volumes/jobs/{job_id}/"),
    ]


def test_every_lifecycle_url_is_403_for_viewer_and_operator_and_the_denial_is_audited(
    client_for, mirror, lifecycle_job
):
    for role in ("Viewer", "Operator"):
        client = client_for(role)
        for method, url in _urls(lifecycle_job.pk):
            before = AuditEvent.objects.filter(action="permission_denied").count()
            response = getattr(client, method)(url, {"name": "x1", "volume": "free", "confirm_name": "free"})
            assert response.status_code == 403, (role, method, url)
            assert AuditEvent.objects.filter(action="permission_denied").count() == before + 1
    assert not Job.objects.exclude(pk=lifecycle_job.pk).exists()


def test_every_lifecycle_url_answers_an_admin(client_for, mirror, lifecycle_job):
    admin = client_for("Admin")
    for method, url in _urls(lifecycle_job.pk):
        response = getattr(admin, method)(url)  # POSTs with no data: form errors, nothing started
        assert response.status_code in (200, 302), (method, url, response.status_code)
    assert not Job.objects.exclude(pk=lifecycle_job.pk).exists()


def test_every_lifecycle_url_sends_anonymous_users_to_login(client, mirror, lifecycle_job):
    for method, url in _urls(lifecycle_job.pk):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/"), (method, url)


@pytest.mark.parametrize(
    "method, url",
    [("put", "/volumes/new/"), ("delete", "/volumes/prune/"), ("patch", "/volumes/free/remove/"),
     ("post", "/volumes/jobs/{job}/"), ("post", "/audit/")],
)
def test_wrong_methods_are_405(client_for, mirror, lifecycle_job, method, url):
    response = getattr(client_for("Admin"), method)(url.format(job=lifecycle_job.pk))
    assert response.status_code == 405


def test_remove_of_unknown_volume_is_404_for_admin_but_403_for_operator(client_for, mirror):
    assert client_for("Admin").get("/volumes/nope/remove/").status_code == 404
    assert client_for("Operator").get("/volumes/nope/remove/").status_code == 403


def test_follow_page_of_a_job_of_another_kind_is_404(client_for, mirror):
    job = Job.objects.create(kind="backup", target="x")
    assert client_for("Admin").get(f"/volumes/jobs/{job.pk}/").status_code == 404


# --- create -------------------------------------------------------------------------


def _create_data(**overrides):
    data = {"name": "new-vol", "driver": "local", "check_mount": "on",
            "opt_key": ["type", "device", "o", ""], "opt_value": ["tmpfs", "tmpfs", "size=1m", ""],
            "label_key": ["team", ""], "label_value": ["shop", ""]}
    data.update(overrides)
    return data


def test_create_starts_a_job_with_the_parsed_options_and_labels(client_for, mirror):
    response = client_for("Admin").post("/volumes/new/", _create_data())

    job = Job.objects.get(kind="volume_create")
    assert response.status_code == 302 and response.url == f"/volumes/jobs/{job.pk}/"
    assert job.target == "new-vol"
    assert job.params["options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert job.params["labels"] == {"team": "shop"}
    assert job.params["check_mount"] is True and job.params["requested_by"].startswith("admin-")


def test_create_with_htmx_answers_the_job_fragment_polling_the_follow_url(client_for, mirror):
    response = client_for("Admin").post("/volumes/new/", _create_data(), HTTP_HX_REQUEST="true")

    job = Job.objects.get(kind="volume_create")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'hx-get="/volumes/jobs/{job.pk}/"' in html
    assert "<html" not in html


def test_generated_name_needs_the_tick_and_an_empty_name(client_for, mirror):
    admin = client_for("Admin")
    admin.post("/volumes/new/", _create_data(name="", generate_name="on"))
    job = Job.objects.get()
    assert job.params["name"] == "" and job.target == "(generated name)"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"name": ""}, "Type a name, or tick"),
        ({"name": "x", "generate_name": "on"}, "not both"),
        ({"name": "a"}, "is not a valid volume name"),
        ({"name": "-dash"}, "is not a valid volume name"),
        ({"name": "has space"}, "is not a valid volume name"),
        ({"name": "semi;colon"}, "is not a valid volume name"),
        ({"name": "é-accent"}, "is not a valid volume name"),
        ({"name": "x" * 256}, "at most 255"),
        ({"name": "free"}, "already exists"),
        ({"driver": "nosuch"}, "no volume driver named nosuch"),
        ({"opt_key": ["a=b"], "opt_value": ["c"]}, "contains &#x27;=&#x27;"),
        ({"label_key": ["com.x=y"], "label_value": ["1"]}, "contains &#x27;=&#x27;"),
        ({"opt_key": ["type", "type"], "opt_value": ["nfs", "tmpfs"]}, "given twice"),
        ({"label_key": ["team", "team"], "label_value": ["a", "b"]}, "given twice"),
        ({"opt_key": ["", "o"], "opt_value": ["orphan", "x"]}, "a value without a key"),
        ({"opt_key": ["bad key"], "opt_value": ["x"]}, "spaces or control characters"),
        ({"label_key": ["ok"], "label_value": ["line\nbreak"]}, "control characters"),
    ],
)
def test_invalid_input_is_a_form_error_and_creates_nothing(client_for, mirror, overrides, message):
    response = client_for("Admin").post("/volumes/new/", _create_data(**overrides))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_gone_volume_name_may_be_used_again(client_for, mirror):
    client_for("Admin").post("/volumes/new/", _create_data(name="gone"))
    assert Job.objects.get().target == "gone"


def test_driver_choices_come_from_the_mirror(client_for, mirror):
    html = client_for("Admin").get("/volumes/new/").content.decode()
    assert '<option value="rexray"' in html and '<option value="local" selected' in html


@pytest.mark.parametrize("preset, expected", [("nfs", "addr=nfs.example.com"), ("tmpfs", "size=100m"),
                                              ("bind", "/srv/data"), ("cifs", "//smb.example.com/share")])
def test_preset_buttons_fill_the_rows_without_javascript(client_for, mirror, preset, expected):
    response = client_for("Admin").post("/volumes/new/", _create_data(name="keepme", preset=preset))

    html = response.content.decode()
    assert expected in html
    assert 'value="keepme"' in html and 'value="shop"' in html  # what was typed stays
    assert "Type a name" not in html  # not validated: it was not a submit
    assert not Job.objects.exists()


# --- remove -------------------------------------------------------------------------


def test_remove_page_asks_to_type_the_name_and_starts_a_job(client_for, mirror):
    admin = client_for("Admin")
    assert "Type <strong" in admin.get("/volumes/free/remove/").content.decode()

    response = admin.post("/volumes/free/remove/", {"confirm_name": "free"})

    job = Job.objects.get(kind="volume_remove")
    assert response.status_code == 302 and response.url == f"/volumes/jobs/{job.pk}/"
    assert job.target == "free"


@pytest.mark.parametrize("typed", ["", "Free", "free ", "fre"])
def test_remove_with_the_wrong_name_typed_does_nothing(client_for, mirror, typed):
    response = client_for("Admin").post("/volumes/free/remove/", {"confirm_name": typed})
    assert response.status_code == 200
    assert not Job.objects.exists()


def test_remove_of_a_volume_a_stopped_container_uses_is_refused_with_its_name(client_for, mirror):
    admin = client_for("Admin")
    page = admin.get("/volumes/used/remove/").content.decode()
    assert "old-job" in page and "exited" in page and 'name="confirm_name"' not in page

    response = admin.post("/volumes/used/remove/", {"confirm_name": "used"})

    assert 'data-refusal="in-use"' in response.content.decode()
    assert not Job.objects.exists()
    event = AuditEvent.objects.get(action="volume_remove")
    assert event.result == "error" and "old-job" in event.error and event.actor_name.startswith("admin-")


def test_remove_of_a_protected_volume_is_refused(client_for, mirror):
    admin = client_for("Admin")
    assert "protected" in admin.get("/volumes/keep/remove/").content.decode()

    admin.post("/volumes/keep/remove/", {"confirm_name": "keep"})

    assert not Job.objects.exists()
    assert AuditEvent.objects.get(action="volume_remove").result == "error"


def test_remove_with_htmx_answers_the_job_fragment(client_for, mirror):
    response = client_for("Admin").post("/volumes/free/remove/", {"confirm_name": "free"}, HTTP_HX_REQUEST="true")
    job = Job.objects.get()
    assert f'hx-get="/volumes/jobs/{job.pk}/"' in response.content.decode()


# --- prune --------------------------------------------------------------------------


def test_prune_preview_lists_unused_anonymous_volumes_with_sizes_and_total(client_for, mirror):
    html = client_for("Admin").get("/volumes/prune/").content.decode()

    assert HEX in html and "cd" * 32 in html
    assert 'data-volume="free"' not in html  # named: only with the checkbox
    assert 'data-volume="used"' not in html and 'data-volume="gone"' not in html
    assert "Kept: protected" in html and "ef" * 32 in html
    assert 'name="volume" value="' + "ef" * 32 not in html
    assert "2\xa0KiB" in html and "1 not measured" in html  # total of the known sizes


def test_prune_checkbox_widens_to_all_unused_volumes(client_for, mirror):
    html = client_for("Admin").get("/volumes/prune/?all=1", HTTP_HX_REQUEST="true").content.decode()

    assert 'data-volume="free"' in html and f'data-volume="{HEX}"' in html
    assert 'data-volume="keep"' not in html and 'data-volume="used"' not in html
    assert "2.9\xa0KiB" in html
    assert 'name="include_named" value="on"' in html
    assert "<html" not in html


def test_prune_confirm_carries_the_exact_list(client_for, mirror):
    response = client_for("Admin").post("/volumes/prune/", {"volume": ["free", HEX], "include_named": "on"})

    job = Job.objects.get(kind="volume_prune")
    assert response.status_code == 302
    assert job.params["names"] == ["free", HEX] and job.params["include_named"] is True
    assert job.progress_total == 2


@pytest.mark.parametrize("data", [{}, {"volume": ["../etc"]}, {"volume": ["ok", "bad name"]}])
def test_prune_with_an_empty_or_bad_list_starts_nothing(client_for, mirror, data):
    response = client_for("Admin").post("/volumes/prune/", data)
    assert response.status_code == 200
    assert not Job.objects.exists()


# --- following a job ------------------------------------------------------------------


def test_follow_redirects_to_the_new_volume_when_the_create_succeeded(client_for, mirror):
    job = Job.objects.create(kind="volume_create", status="succeeded", result={"name": "free", "message": "ok"})
    response = client_for("Admin").get(f"/volumes/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert response.headers["HX-Redirect"] == "/volumes/free/"


def test_follow_redirects_to_the_list_with_a_message_when_the_remove_succeeded(client_for, mirror):
    job = Job.objects.create(kind="volume_remove", target="free", status="succeeded",
                             result={"message": "Removed volume free."})
    admin = client_for("Admin")
    response = admin.get(f"/volumes/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert response.headers["HX-Redirect"] == "/volumes/"
    assert "Removed volume free." in admin.get("/volumes/").content.decode()


def test_follow_keeps_polling_while_active_and_stops_with_the_error_when_failed(client_for, mirror):
    admin = client_for("Admin")
    job = Job.objects.create(kind="volume_remove", target="free", status="running")
    running = admin.get(f"/volumes/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert running.status_code == 200 and f'hx-get="/volumes/jobs/{job.pk}/"' in running.content.decode()

    Job.objects.filter(pk=job.pk).update(status="failed", error="Volume free is used by 1 container: x (running).")
    failed = admin.get(f"/volumes/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert failed.status_code == 286
    assert "used by 1 container" in failed.content.decode() and "hx-get" not in failed.content.decode()


def test_follow_shows_the_prune_result(client_for, mirror):
    job = Job.objects.create(kind="volume_prune", target="2 volumes", status="succeeded", result={
        "removed": [{"name": HEX, "size_bytes": 2048}], "skipped": [{"name": "free", "reason": "in use by web (running)"}],
        "reclaimed_bytes": 2048, "unmeasured": 0, "message": "Removed 1 volume, skipped 1; 2.0 KB reclaimed.",
    })
    admin = client_for("Admin")
    for response in (admin.get(f"/volumes/jobs/{job.pk}/", HTTP_HX_REQUEST="true"), admin.get(f"/volumes/jobs/{job.pk}/")):
        html = response.content.decode()
        assert "Removed 1 volume, skipped 1" in html
        assert "in use by web (running)" in html and HEX in html


# --- buttons and masking ---------------------------------------------------------------


def test_lifecycle_buttons_and_audit_link_show_for_admins_only(client_for, mirror):
    admin_list = client_for("Admin").get("/volumes/").content.decode()
    admin_detail = client_for("Admin").get("/volumes/free/").content.decode()
    operator = client_for("Operator")
    assert "/volumes/new/" in admin_list and "/volumes/prune/" in admin_list and 'href="/audit/"' in admin_list
    assert "/volumes/free/remove/" in admin_detail
    assert "/volumes/new/" not in operator.get("/volumes/").content.decode()
    assert "/remove/" not in operator.get("/volumes/free/").content.decode()
    assert 'href="/audit/"' not in operator.get("/volumes/").content.decode()
    assert "/volumes/keep/remove/" not in client_for("Admin").get("/volumes/keep/").content.decode()


def test_detail_page_masks_a_password_in_driver_options(client_for, mirror):
    Volume.objects.create(name="share", options={"type": "cifs", "o": "addr=s,username=u,password=hunter2,vers=3.0"})
    html = client_for("Viewer").get("/volumes/share/").content.decode()
    assert "hunter2" not in html and "password=***" in html and "username=u" in html
