"""Creating volumes against the real engine (the worker side, run in the test process)."""

import json
import re

import pytest

from accounts.models import AuditEvent
from jobs.models import Job
from project.errors import Refused
from tests import dockercli
from tests.volumes.lifecycle import cleanup_labels, run_inline
from volumes import services
from volumes.models import Volume

# transaction=True: the runner closes a connection left in a transaction, as a worker would.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.usefixtures("no_enqueue")]


def _inspect(name: str) -> dict:
    return json.loads(dockercli.docker("volume", "inspect", name))[0]


def _start(user, **kwargs):
    spec = {"driver": "local", "options": {}, "labels": cleanup_labels(), "check_mount": False}
    spec.update(kwargs)
    return services.volume_create_start(user=user, **spec)


def test_create_makes_the_volume_with_options_and_labels_mirrors_it_and_audits(make_user):
    admin = make_user("Admin")
    name = dockercli.unique_name("new")
    job = _start(admin, name=name, options={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"},
                 labels=cleanup_labels(team="shop"), check_mount=True)

    result, error = run_inline(job)

    assert error is None
    engine = _inspect(name)
    assert engine["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
    assert engine["Labels"]["team"] == "shop"
    mirrored = Volume.objects.get(name=name)  # in the mirror at once, not at the next sync
    assert mirrored.options["o"] == "size=2m" and mirrored.last_error == ""
    assert result["name"] == name and result["mount_error"] == ""
    event = AuditEvent.objects.get(action="volume_create")
    assert (event.result, event.object_name, event.actor_name) == ("ok", name, admin.username)
    assert event.params["options"]["type"] == "tmpfs" and event.params["mount_check"] == "ok"


def test_generated_name_is_the_engines_and_becomes_the_jobs_target(make_user):
    job = _start(make_user("Admin"), name="")

    result, error = run_inline(job)

    assert error is None
    assert re.fullmatch(r"[0-9a-f]{64}", result["name"])
    assert dockercli.volume_exists(result["name"])
    assert Job.objects.get(pk=job.pk).target == result["name"]
    assert Volume.objects.get(name=result["name"]).anonymous is True


def test_name_taken_on_the_engine_but_not_yet_in_the_mirror_is_refused_and_nothing_changes(make_user):
    name = dockercli.create_volume(labels={"owner": "someone-else"})
    assert not Volume.objects.filter(name=name).exists()  # the mirror has not seen it
    job = _start(make_user("Admin"), name=name, labels=cleanup_labels(owner="me"))

    _, error = run_inline(job)

    assert isinstance(error, Refused) and "already exists" in str(error)
    assert _inspect(name)["Labels"]["owner"] == "someone-else"
    event = AuditEvent.objects.get(action="volume_create")
    assert event.result == "error" and "already exists" in event.error


def test_unknown_driver_is_refused_with_a_readable_message(make_user):
    name = dockercli.unique_name("drv")
    job = _start(make_user("Admin"), name=name, driver="nosuchdriver")

    _, error = run_inline(job)

    assert isinstance(error, Refused) and "no volume driver named 'nosuchdriver'" in str(error)
    assert "local" in str(error)
    assert not dockercli.volume_exists(name)


def test_volume_the_driver_cannot_mount_is_created_and_shows_the_engines_message(make_user, client_for):
    """Docker creates an NFS volume without asking the server; the mount check finds out."""
    name = dockercli.unique_name("nfs")
    job = _start(make_user("Admin"), name=name, check_mount=True,
                 options={"type": "nfs", "o": "addr=127.0.0.1,rw,soft,timeo=10,retrans=1", "device": ":/export/none"})

    result, error = run_inline(job)

    assert error is None  # Docker created it; using it fails
    assert dockercli.volume_exists(name)
    assert "error while mounting volume" in result["mount_error"]
    volume = Volume.objects.get(name=name)
    assert "error while mounting volume" in volume.last_error
    page = client_for("Viewer").get(f"/volumes/{name}/").content.decode()
    assert "The engine said, when Cargohold last used this volume" in page and "error while mounting" in page


def test_bind_preset_with_a_missing_host_folder_reports_it(make_user):
    name = dockercli.unique_name("bind")
    job = _start(make_user("Admin"), name=name, check_mount=True,
                 options={"type": "none", "o": "bind", "device": f"/nonexistent/{name}"})

    result, error = run_inline(job)

    assert error is None
    assert "no such file or directory" in result["mount_error"]


def test_cifs_password_stays_out_of_the_audit_trail_and_the_job_row(make_user):
    name = dockercli.unique_name("cifs")
    job = _start(make_user("Admin"), name=name, check_mount=False,
                 options={"type": "cifs", "o": "addr=127.0.0.1,username=u,password=S3cr3t-pw,vers=3.0",
                          "device": "//127.0.0.1/share"})

    _, error = run_inline(job)

    assert error is None
    assert _inspect(name)["Options"]["o"].endswith("password=S3cr3t-pw,vers=3.0")  # the engine got it
    event = AuditEvent.objects.get(action="volume_create")
    assert "S3cr3t-pw" not in json.dumps(event.params) and "password=***" in event.params["options"]["o"]
    assert "S3cr3t-pw" not in json.dumps(Job.objects.get(pk=job.pk).params)


def test_two_creates_of_one_name_the_second_is_refused(make_user):
    admin = make_user("Admin")
    name = dockercli.unique_name("twice")
    first, second = _start(admin, name=name), _start(admin, name=name)

    assert run_inline(first)[1] is None
    _, error = run_inline(second)

    assert isinstance(error, Refused) and "already exists" in str(error)


def test_a_create_cancelled_while_queued_is_audited_and_forgets_its_password(make_user):
    from jobs.services import job_request_cancel, jobs_end_pending

    name = dockercli.unique_name("cancelled")
    job = _start(make_user("Admin"), name=name, check_mount=False,
                 options={"type": "cifs", "o": "addr=127.0.0.1,username=u,password=S3cr3t-pw,vers=3.0",
                          "device": "//127.0.0.1/share"})
    job_request_cancel(job=job)
    jobs_end_pending()  # the sweep: the job's on_end runs though it never ran

    event = AuditEvent.objects.get(action="volume_create")
    assert (event.result, event.object_name) == ("error", name) and "Cancelled" in event.error
    assert "S3cr3t-pw" not in json.dumps(Job.objects.get(pk=job.pk).params)
    assert not dockercli.volume_exists(name)
