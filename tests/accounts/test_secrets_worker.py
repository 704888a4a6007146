"""A CIFS password typed by an Admin reaches no page, job row, audit event or log line:
real engine (whose mount error repeats the options), real worker, real pages."""

import json

import pytest
from django.db import transaction

from accounts.models import AuditEvent
from backups import services as backup_services
from backups.models import Backup
from jobs.models import Job
from restores.models import Restore
from tests import dockercli
from tests.conftest import wait_for
from tests.restores.conftest import run_backup_now
from tests.volumes.lifecycle import cleanup_labels
from volumes.models import Volume
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

SECRET = "SuperSecret123"
# Docker creates the volume; mounting it (in a helper container) fails, and the engine's
# error text names the mount data: "... data: username=u,password=SuperSecret123: ...".
CIFS = {"type": "cifs", "o": f"username=u,password={SECRET}", "device": "//127.0.0.1/nothing"}


def _pairs(prefix: str, pairs: dict) -> dict:
    return {f"{prefix}_key": list(pairs), f"{prefix}_value": list(pairs.values())}


def _job_ended(pk: int) -> Job:
    job = Job.objects.get(pk=pk)
    return job if not job.is_active else None


def _everything_stored() -> str:
    """Every row where an option value or an engine error could have been kept."""
    rows = [
        *Job.objects.values("params", "error", "result", "progress_message", "target"),
        *Volume.objects.values("options", "last_error"),
        *Backup.objects.values("error", "manifest", "restart_error"),
        *Restore.objects.values("options", "error", "outcome"),
        *AuditEvent.objects.values("params", "error", "object_name"),
    ]
    return json.dumps(rows, default=str)


def test_a_cifs_password_in_the_engines_mount_error_is_kept_nowhere(celery_worker, client_for):
    mirror_sync()  # the create form lists the drivers the engine reported
    admin, viewer = client_for("Admin"), client_for("Viewer")
    name = dockercli.unique_name("cifs")

    response = admin.post("/volumes/new/", {"name": name, "driver": "local", "check_mount": "on",
                                            **_pairs("opt", CIFS), **_pairs("label", cleanup_labels())})
    assert response.status_code == 302
    create_job = Job.objects.get(kind="volume_create", target__in=[name, "(generated name)"])
    create_job = wait_for(lambda: _job_ended(create_job.pk), timeout=90, message="the create job")
    # The engine did get the password (Docker keeps it: Cargohold cannot change that).
    assert json.loads(dockercli.docker("volume", "inspect", name))[0]["Options"]["o"].endswith(SECRET)
    assert "could not mount" in create_job.result["message"]

    with transaction.atomic():
        backup = backup_services.backup_start(volume_name=name)
    backup_job = wait_for(lambda: _job_ended(backup.job_id), timeout=90, message="the backup job")
    backup.refresh_from_db()
    volume = Volume.objects.get(name=name)

    # Still a message a person can act on.
    assert backup.status == Backup.Status.FAILED and backup_job.status == Job.Status.FAILED
    for text in (backup.error, backup_job.error, volume.last_error, create_job.result["mount_error"]):
        assert "mount" in text and "no such device" in text and "password=***" in text, text
        assert SECRET not in text
    assert SECRET not in _everything_stored()
    finish = AuditEvent.objects.get(action="backup_finish", object_name=name)
    assert finish.result == "error" and "password=***" in finish.error

    pages = [
        viewer.get(f"/volumes/{name}/"), viewer.get(f"/jobs/{create_job.pk}/"), viewer.get(f"/jobs/{backup_job.pk}/"),
        admin.get(f"/volumes/jobs/{create_job.pk}/"), viewer.get(f"/backups/{backup.pk}/"), viewer.get("/"),
        admin.get("/audit/"), admin.get(f"/audit/?object_name={name}"),
    ]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200 and SECRET not in html, page.request["PATH_INFO"]
    assert "no such device" in pages[0].content.decode() and "no such device" in pages[4].content.decode()

    log = wait_for(lambda: (text := celery_worker.log()) and f"backup {backup.pk} of {name} failed" in text and text,
                   timeout=10, message="the worker's log line of the failed backup")
    assert "password=***" in log and SECRET not in log


def test_a_restore_does_not_echo_typed_secrets_and_forgets_them_once_used(celery_worker, client_for):
    admin, viewer = client_for("Admin"), client_for("Viewer")
    source = dockercli.create_volume()
    dockercli.fill_volume(source, "echo hello > /data/hello")
    mirror_sync()
    backup = run_backup_now(source)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    target = dockercli.unique_name("restored")

    response = admin.post(f"/backups/{backup.pk}/restore/", {
        "name": target, "driver": "local", **_pairs("opt", CIFS), **_pairs("label", cleanup_labels()),
    })
    assert response.status_code == 302, response.content.decode()[-2000:]
    restore = Restore.objects.get(volume_name=target)
    first = admin.get(response["Location"])
    assert first.status_code == 200 and SECRET not in first.content.decode()
    assert "password=***" in first.content.decode() and "//127.0.0.1/nothing" in first.content.decode()

    wait_for(lambda: _job_ended(restore.job_id), timeout=120, message="the restore job")
    restore.refresh_from_db()
    # The worker created the volume with the real options (the engine was asked), then kept
    # only a scrubbed copy.
    assert restore.volume_create_requested and restore.volume_created_at
    assert restore.options == {**CIFS, "o": "username=u,password=***"}
    assert restore.status == Restore.Status.FAILED and "password=***" in restore.error
    assert SECRET not in _everything_stored()
    for page in (admin.get(f"/restores/{restore.pk}/"), viewer.get(f"/restores/{restore.pk}/"),
                 viewer.get(f"/jobs/{restore.job_id}/"), admin.get("/audit/")):
        assert page.status_code == 200 and SECRET not in page.content.decode()
    assert SECRET not in celery_worker.log()
