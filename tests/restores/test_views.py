"""Restore and import pages: who may do what, forms, htmx polling, uploads (database only;
the jobs are created but not run, except the one import run in-process)."""

import gzip
import io
import tarfile

import pytest
from django.test import Client

from accounts.models import AuditEvent
from backups.models import Backup
from jobs.models import Job
from restores.models import Restore
from tests.restores.conftest import found_job
from volumes.models import Volume

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup(no_enqueue, backup_root):
    volume = Volume.objects.create(name="shop_db", driver="local", labels={"app": "shop"})
    return Backup.objects.create(
        job=found_job("shop_db"), volume=volume, volume_name="shop_db", key="shop_db/shop_db-1.tar.zst",
        sha256="a" * 64, size_bytes=100, bytes_read=1024, file_count=3,
        manifest={"volume": {"name": "shop_db", "driver": "local", "options": {"type": "none"},
                             "labels": {"app": "shop"}, "options_redacted": []},
                  "archive": {"sha256": "a" * 64}},
    )


@pytest.fixture
def restore(backup):
    job = Job.objects.create(kind="restore", target="copy", status="succeeded", end_handled=True)
    return Restore.objects.create(job=job, backup=backup, backup_label="#1", mode="new", volume_name="copy",
                                  partial=True, rollback_pending=True)


def _urls(backup_id, restore_id):
    return {
        "new": f"/backups/{backup_id}/restore/",
        "in_place": f"/backups/{backup_id}/restore-in-place/",
        "list": "/restores/",
        "detail": f"/restores/{restore_id}/",
        "remove_partial": f"/restores/{restore_id}/remove-partial/",
        "roll_back": f"/restores/{restore_id}/roll-back/",
        "dismiss": f"/restores/{restore_id}/dismiss/",
        "import": "/backups/import/",
    }


# (url key, method, {role: expected status})
MATRIX = [
    ("new", "get", {"Viewer": 403, "Operator": 200, "Admin": 200}),
    ("new", "post", {"Viewer": 403}),
    ("in_place", "get", {"Viewer": 403, "Operator": 403, "Admin": 200}),
    ("in_place", "post", {"Viewer": 403, "Operator": 403}),
    ("list", "get", {"Viewer": 200, "Operator": 200, "Admin": 200}),
    ("detail", "get", {"Viewer": 200, "Operator": 200, "Admin": 200}),
    ("remove_partial", "post", {"Viewer": 403, "Operator": 302, "Admin": 302}),
    ("roll_back", "post", {"Viewer": 403, "Operator": 403, "Admin": 302}),
    ("dismiss", "post", {"Viewer": 403, "Operator": 403, "Admin": 302}),
    ("import", "get", {"Viewer": 403, "Operator": 200, "Admin": 200}),
    ("import", "post", {"Viewer": 403}),
]


@pytest.mark.parametrize("key,method,expected", MATRIX)
def test_each_url_allows_exactly_the_roles_it_should(client_for, backup, restore, key, method, expected):
    url = _urls(backup.pk, restore.pk)[key]
    for role, status in expected.items():
        response = getattr(client_for(role), method)(url)
        assert response.status_code == status, (role, url, response.status_code)
        if status == 403:
            assert AuditEvent.objects.filter(action="permission_denied", result="denied",
                                             params__path=url).exists()


@pytest.mark.parametrize("key", ["new", "in_place", "list", "detail", "import"])
def test_anonymous_visitors_are_sent_to_the_login_page(backup, restore, key):
    response = Client().get(_urls(backup.pk, restore.pk)[key])
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("key,method", [("remove_partial", "get"), ("roll_back", "get"), ("dismiss", "get"),
                                        ("list", "post"), ("detail", "post"), ("new", "put")])
def test_wrong_methods_are_refused(client_for, backup, restore, key, method):
    assert getattr(client_for("Admin"), method)(_urls(backup.pk, restore.pk)[key]).status_code == 405


def test_posts_need_the_csrf_token(make_user, backup):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("Admin"))
    archive = io.BytesIO(b"x" * 1024)
    archive.name = "a.tar"
    assert client.post("/backups/import/", {"archive": archive}).status_code == 403
    assert client.post(f"/backups/{backup.pk}/restore/", {"name": "copy-1", "driver": "local"}).status_code == 403
    assert not Restore.objects.exists() and not Backup.objects.filter(origin="imported").exists()


def test_the_new_volume_form_starts_from_the_manifest_and_queues_a_restore(client_for, backup):
    client = client_for("Admin")  # driver options are an Admin's (tests/restores/test_hardening_permissions.py)
    page = client.get(f"/backups/{backup.pk}/restore/").content.decode()
    assert 'value="shop_db-restored-' in page and 'name="label_key" value="app"' in page
    assert 'name="opt_key" value="type"' in page

    response = client.post(f"/backups/{backup.pk}/restore/", {
        "name": "shop_db_copy", "driver": "local", "opt_key": ["type"], "opt_value": ["none"],
        "label_key": ["app", "restored"], "label_value": ["shop", "yes"],
    })

    restore = Restore.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/restores/{restore.pk}/"
    assert (restore.mode, restore.volume_name, restore.driver) == ("new", "shop_db_copy", "local")
    assert restore.labels == {"app": "shop", "restored": "yes"} and restore.options == {"type": "none"}
    assert restore.job.status == "queued" and restore.job.kind == "restore"
    assert AuditEvent.objects.filter(action="restore_start", object_name="shop_db_copy", result="ok").exists()


@pytest.mark.parametrize("name,message", [("shop_db", "already exists"), ("bad name", "not a valid volume name")])
def test_a_bad_name_is_refused_with_a_message_and_nothing_queued(client_for, backup, name, message):
    response = client_for("Operator").post(f"/backups/{backup.pk}/restore/", {"name": name, "driver": "local"})
    assert response.status_code == 400 and message in response.content.decode()
    assert not Restore.objects.exists() and not Job.objects.filter(kind="restore").exists()


def test_restore_in_place_needs_the_volume_name_typed(client_for, backup):
    client = client_for("Admin")
    page = client.get(f"/backups/{backup.pk}/restore-in-place/").content.decode()
    assert "safety backup" in page
    response = client.post(f"/backups/{backup.pk}/restore-in-place/", {"confirm_name": "shop"})
    assert response.status_code == 400 and "does not match" in response.content.decode()
    assert not Restore.objects.exists()
    response = client.post(f"/backups/{backup.pk}/restore-in-place/", {"confirm_name": "shop_db"})
    restore = Restore.objects.get()
    assert response.status_code == 302 and restore.mode == "in_place" and restore.job.kind == "restore_in_place"


def test_the_detail_page_polls_until_the_job_ends(client_for, restore):
    client = client_for("Viewer")
    restore.job.status = "running"
    restore.job.save()
    response = client.get(f"/restores/{restore.pk}/", headers={"HX-Request": "true"})
    body = response.content.decode()
    # One polled region per page (jobs/polling.py): the facts are inside it, no out-of-band swap.
    assert response.status_code == 200 and 'id="restore-facts"' in body and 'hx-trigger="every 2s"' in body
    assert f'hx-get="/restores/{restore.pk}/"' in body
    restore.job.status = "failed"
    restore.job.save()
    assert client.get(f"/restores/{restore.pk}/", headers={"HX-Request": "true"}).status_code == 286
    full = client.get(f"/restores/{restore.pk}/").content.decode()
    assert "<html" in full and "half-filled" in full


def _tar_gz(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


@pytest.mark.django_db(transaction=True)
def test_an_upload_is_staged_then_imported_by_the_worker_handler(client_for, no_enqueue, backup_root, settings):
    from jobs.runner import job_perform

    archive = io.BytesIO(_tar_gz({"data": None, "data/hello.txt": b"hello\n"}))
    archive.name = "backup.tar.gz"
    client = client_for("Operator")

    response = client.post("/backups/import/", {"archive": archive})

    backup = Backup.objects.get(origin="imported")
    assert response.status_code == 302 and response["Location"] == f"/backups/import/{backup.pk}/"
    assert backup.status == "queued" and backup.volume_name == "backup" and backup.job.kind == "backup_import"
    staged = list(settings.UPLOAD_DIR.iterdir())
    assert [p.name for p in staged] == [backup.job.params["staged"]]
    job_perform(backup.job_id)
    backup.refresh_from_db()
    assert backup.status == "succeeded", backup.error
    assert backup.compression == "gzip" and backup.file_count == 1 and backup.manifest["origin"] == "imported"
    assert not list(settings.UPLOAD_DIR.iterdir())  # the staged upload is gone
    page = client.get(f"/backups/import/{backup.pk}/").content.decode()
    assert f'href="/backups/{backup.pk}/restore/"' in page


def test_an_upload_over_the_limit_is_refused_and_not_kept(client_for, backup_root, settings):
    settings.UPLOAD_MAX_BYTES = 10_000
    archive = io.BytesIO(b"\0" * 50_000)
    archive.name = "big.tar"
    response = client_for("Operator").post("/backups/import/", {"archive": archive})
    assert response.status_code == 413
    assert not Backup.objects.exists()
    leftovers = list(settings.UPLOAD_DIR.iterdir()) if settings.UPLOAD_DIR.exists() else []
    assert leftovers == []


def test_a_file_that_is_not_an_archive_is_refused_at_once(client_for, backup_root, settings):
    archive = io.BytesIO(b"just some text\n" * 100)
    archive.name = "notes.tar.gz"
    response = client_for("Operator").post("/backups/import/", {"archive": archive, "volume_name": "notes"})
    assert response.status_code == 400 and "not a tar archive" in response.content.decode()
    assert not Backup.objects.exists() and not any(settings.UPLOAD_DIR.iterdir())
    assert AuditEvent.objects.filter(action="backup_import", result="error").exists()


def test_stale_uploads_are_cleaned_but_pending_ones_kept(backup_root, settings):
    import os
    import time as time_module

    from backups import imports

    folder = imports.upload_dir()
    pending = folder / ("upload-" + "a" * 32 + ".staged")
    done = folder / ("upload-" + "b" * 32 + ".staged")
    stale = folder / ("upload-" + "c" * 32 + ".partial")
    fresh = folder / ("upload-" + "d" * 32 + ".partial")  # an upload arriving right now
    for path in (pending, done, stale, fresh):
        path.write_bytes(b"x")
    old = time_module.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    Job.objects.create(kind="backup_import", status="queued", params={"staged": pending.name})
    Job.objects.create(kind="backup_import", status="failed", params={"staged": done.name})

    removed = imports.uploads_clean()

    assert sorted(removed) == sorted([done.name, stale.name])
    assert pending.exists() and fresh.exists() and not done.exists() and not stale.exists()
