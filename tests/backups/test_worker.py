"""End-to-end flows with real Celery workers: the queue, the CLI, and a worker killed mid-backup."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from accounts.models import AuditEvent
from backups import services
from backups.models import Backup
from backups.storage import get_storage
from jobs.locks import volume_lock
from jobs.models import Job, ResourceLock
from jobs.services import job_request_cancel
from jobs.tasks import run_job
from tests import dockercli
from tests.backups.engineproxy import backup_streaming, slow_engine_worker
from tests.conftest import ROOT, _test_env, wait_for
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

SERVICE = "trap 'exit 0' TERM; sleep 3600 & wait"


def _ended(backup: Backup) -> bool:
    backup.refresh_from_db()
    return not backup.is_active


def _volume(script: str = "echo hello > /data/hello.txt") -> str:
    name = dockercli.create_volume()
    dockercli.fill_volume(name, script)
    mirror_sync()
    return name


def manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_test_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_a_queued_backup_is_run_by_the_worker(celery_worker):
    name = _volume()
    with transaction.atomic():
        backup = services.backup_start(volume_name=name)

    wait_for(lambda: _ended(backup), timeout=60, message="the backup")
    # The runner writes the job row's end right after the handler (which ended the backup).
    wait_for(lambda: not Job.objects.get(pk=backup.job_id).is_active, timeout=30, message="the job row")

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert Job.objects.get(pk=backup.job_id).status == Job.Status.SUCCEEDED
    assert Path(backup.location).is_file() and backup.verified
    assert AuditEvent.objects.filter(action="backup_finish", object_name=name, result="ok").exists()


def test_cli_backup_with_wait_prints_the_id_and_exits_0_on_success(celery_worker):
    name = _volume()

    done = manage("backup_volume", name, "--compression", "gzip", "--wait", "--timeout", "90")

    assert done.returncode == 0, done.stderr
    backup = Backup.objects.get(pk=int(done.stdout.strip()))
    assert backup.status == Backup.Status.SUCCEEDED and backup.compression == "gzip" and backup.trigger == "cli"
    listed = json.loads(manage("list_backups", "--volume", name, "--json").stdout)
    assert [row["id"] for row in listed] == [backup.pk] and listed[0]["location"] == backup.location


def test_cli_backup_with_wait_exits_non_zero_when_the_backup_fails(celery_worker):
    name = _volume()
    dockercli.docker("volume", "rm", name)  # the mirror still lists it: the worker finds out

    done = manage("backup_volume", name, "--wait", "--timeout", "90")

    assert done.returncode != 0
    backup = Backup.objects.get(pk=int(done.stdout.strip()))
    assert backup.status == Backup.Status.FAILED and "no longer exists" in done.stderr


def test_cli_refuses_an_unknown_volume(celery_worker):
    done = manage("backup_volume", dockercli.unique_name("none"), "--wait")

    assert done.returncode != 0 and "No volume named" in done.stderr and not Backup.objects.exists()


def test_a_backup_cancelled_while_queued_ends_cancelled(no_enqueue):
    name = _volume()
    backup = services.backup_start(volume_name=name)
    job_request_cancel(job=backup.job)

    run_job(backup.job_id)  # the message arrives after the cancel

    backup.refresh_from_db()
    assert backup.status == Backup.Status.CANCELLED and not backup.key


def test_a_backup_cancelled_while_queued_is_audited_once_however_often_its_message_comes(no_enqueue):
    name = _volume()
    backup = services.backup_start(volume_name=name)
    job_request_cancel(job=backup.job)

    run_job(backup.job_id)
    run_job(backup.job_id)  # delivered again

    finished = AuditEvent.objects.filter(action="backup_finish", object_name=name)
    assert [(e.result, e.params["status"]) for e in finished] == [("error", "cancelled")]
    assert Job.objects.get(pk=backup.job_id).end_handled


def test_worker_killed_mid_backup_leaves_nothing_half_done_and_the_next_backup_succeeds(
    worker_factory, monkeypatch, tmp_path
):
    name = _volume("head -c 30000000 /dev/urandom > /data/big.bin && echo small > /data/small.txt")
    user = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    mirror_sync()
    # The doomed worker reads the engine through a slow link, so the kill lands mid-stream.
    doomed, queue, proxy = slow_engine_worker(worker_factory, monkeypatch, tmp_path, name="doomed")
    try:
        backup = backup_streaming(volume_name=name, queue=queue)
        assert dockercli.container_state(user) == "exited"  # stopped for the backup
        backup.refresh_from_db()
        assert [c["name"] for c in backup.stopped_containers] == [user] and backup.restart_pending

        doomed.kill()
    finally:
        proxy.close()

    backup.refresh_from_db()
    assert backup.status == Backup.Status.RUNNING  # nobody is left to say otherwise
    assert list(Path(settings.BACKUP_ROOT).rglob(f".tmp-*{backup.uid.hex}.partial"))  # the half-written file

    # A worker starts: its start-up recovery repairs what the dead one left.
    survivor = worker_factory(concurrency=1, name="survivor", queue=queue)
    wait_for(lambda: _ended(backup), timeout=60, message="recovery to fail the backup")
    wait_for(lambda: dockercli.container_state(user) == "running", timeout=30, message="the container to restart")

    backup.refresh_from_db()
    job = Job.objects.get(pk=backup.job_id)
    assert backup.status == Backup.Status.FAILED and job.status == Job.Status.FAILED
    assert "worker" in backup.error
    assert not backup.restart_pending
    wait_for(lambda: not list(Path(settings.BACKUP_ROOT).rglob(".tmp-*")), timeout=30, message="temp file removal")
    assert not get_storage().exists(backup.key)  # nothing under a final name
    assert [k for k in get_storage().list_keys() if k.startswith(f"{name}/")] == []
    assert not ResourceLock.objects.filter(resource=volume_lock(name)).exists()
    assert dockercli.docker("ps", "-aq", "--filter", f"label=cargohold.job={backup.job_id}") == ""
    # The sweep's on_end ended it once, in the survivor: audited as failed.
    assert AuditEvent.objects.filter(action="backup_finish", object_name=name, result="error").count() == 1

    with transaction.atomic():
        again = services.backup_start(volume_name=name, queue=queue)
    wait_for(lambda: _ended(again), timeout=60, message="the next backup")
    assert again.status == Backup.Status.SUCCEEDED, again.error
    assert survivor.proc.poll() is None
