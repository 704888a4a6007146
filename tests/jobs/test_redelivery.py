"""A job's message delivered twice (Redis redelivers after the visibility timeout, or
someone re-sends it) never breaks the job: a live owner keeps it; only a proven-dead
owner's job is failed, and only then does recovery touch what the job holds."""

import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backups import services as backup_services
from backups import worker as backup_worker
from backups.models import Backup
from jobs import recovery
from jobs.models import Job, ResourceLock
from jobs.runner import job_perform
from jobs.services import job_create, jobs_fail_orphaned
from jobs.tasks import run_job as run_job_task
from jobs.tasks import sweep_stale_jobs
from tests import dockercli
from tests.backups.engineproxy import backup_streaming, slow_engine_worker
from tests.conftest import wait_for
from tests.jobs import tasks as demo  # noqa: F401  (registers the demo kinds in this process)
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True)]

SERVICE = "trap 'exit 0' TERM; sleep 3600 & wait"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running(worker: str, heartbeat_age: float) -> Job:
    at = timezone.now() - timedelta(seconds=heartbeat_age)
    # Kind "demo_never": its perform fails the test if a second delivery ever ran it.
    return Job.objects.create(kind="demo_never", status=Job.Status.RUNNING, started_at=at, heartbeat_at=at, worker=worker)


def _delivered_log(worker, task_id: str) -> bool:
    return f"[{task_id}] succeeded" in worker.log()


# --- the claim decides from the owner, not from the message --------------------------------


def test_second_delivery_leaves_a_job_with_fresh_heartbeat_alone():
    job = _running("other-host:123", heartbeat_age=1)

    assert job_perform(job.pk) is None

    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.error == "" and job.finished_at is None


def test_second_delivery_leaves_a_job_whose_owner_process_lives_alone_even_with_a_late_heartbeat(settings):
    # Our own pid: provably alive, although its heartbeat is late (a slow database).
    settings.JOB_STALE_SECONDS = 60
    job = _running(f"{socket.gethostname()}:{os.getpid()}", heartbeat_age=30)

    assert job_perform(job.pk) is None

    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING


def test_second_delivery_fails_a_job_whose_worker_process_on_this_host_is_gone():
    job = _running(f"{socket.gethostname()}:{_dead_pid()}", heartbeat_age=0)

    assert job_perform(job.pk) is None

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "stopped" in job.error and job.finished_at


def test_a_killed_worker_process_not_yet_reaped_counts_as_gone():
    # SIGKILLed but not reaped (a zombie, as when a dead worker's children wait for init):
    # it runs no more code, so its job is failed at once, not after JOB_STALE_SECONDS.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc.kill()
        wait_for(lambda: "zombie" in Path(f"/proc/{proc.pid}/status").read_text(), message="a zombie")
        job = _running(f"{socket.gethostname()}:{proc.pid}", heartbeat_age=0)

        assert jobs_fail_orphaned() == [job.pk]
    finally:
        proc.wait()
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED


def test_second_delivery_fails_a_job_whose_heartbeat_is_stale(settings):
    settings.JOB_STALE_SECONDS = 60
    job = _running("other-host:123", heartbeat_age=120)

    assert job_perform(job.pk) is None

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "stopped" in job.error


@pytest.mark.worker
def test_message_sent_again_while_the_job_runs_on_a_real_worker_is_finished_quietly(worker_factory):
    queue = f"{os.environ['CELERY_QUEUE']}-twice-{uuid.uuid4().hex[:6]}"
    # Two pool children: the second delivery is taken at once, beside the running job.
    worker = worker_factory(concurrency=2, name="twice", queue=queue)
    with transaction.atomic():
        job = job_create(kind="demo_sleep", params={"steps": 80, "delay": 0.1}, queue=queue)
    wait_for(lambda: Job.objects.get(pk=job.pk).progress_done > 2, message="the job to make progress")
    owner = Job.objects.get(pk=job.pk).worker

    again = run_job_task.apply_async((job.pk,), queue=queue)
    wait_for(lambda: _delivered_log(worker, again.id), timeout=30, message="the second delivery to be handled")
    sweep_stale_jobs()

    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.error == "" and job.worker == owner
    wait_for(lambda: not Job.objects.get(pk=job.pk).is_active, timeout=60, message="the job to end")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"steps": 80} and job.progress_done == 80


# --- a real backup, its message sent again while it streams --------------------------------


def _temp_files(backup: Backup) -> list[Path]:
    return list(Path(settings.BACKUP_ROOT).rglob(f".tmp-*{backup.uid.hex}.partial"))


@pytest.mark.engine
@pytest.mark.worker
def test_backup_message_delivered_twice_while_streaming_keeps_lock_temp_file_and_stopped_containers(
    worker_factory, monkeypatch, tmp_path
):
    name = dockercli.create_volume()
    dockercli.fill_volume(name, "head -c 40000000 /dev/urandom > /data/big.bin && echo small > /data/small.txt")
    user = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    mirror_sync()
    # A slow link to the engine keeps the backup streaming for about twenty seconds.
    worker, queue, proxy = slow_engine_worker(worker_factory, monkeypatch, tmp_path, name="twice", concurrency=2)
    try:
        backup = backup_streaming(volume_name=name, queue=queue)
        assert dockercli.container_state(user) == "exited"

        again = run_job_task.apply_async((backup.job_id,), queue=queue)
        wait_for(lambda: _delivered_log(worker, again.id), timeout=30, message="the second delivery to be handled")
        sweep_stale_jobs()
        recovery.run_all()

        job = Job.objects.get(pk=backup.job_id)
        backup.refresh_from_db()
        assert job.status == Job.Status.RUNNING and job.error == "", job.error
        assert backup.status == Backup.Status.RUNNING and backup.restart_pending
        assert ResourceLock.objects.filter(resource=f"volume:{name}", job=job).exists()
        assert _temp_files(backup), "the temporary file of the running backup was removed"
        assert dockercli.container_state(user) == "exited"

        # A second backup of the same volume waits for the lock instead of starting beside it.
        with transaction.atomic():
            second = backup_services.backup_start(volume_name=name, queue=queue)
        wait_for(lambda: Job.objects.get(pk=second.job_id).progress_message.startswith("Waiting for"),
                 timeout=30, message="the second backup to wait for the volume")
        assert Job.objects.get(pk=backup.job_id).status == Job.Status.RUNNING

        wait_for(lambda: not Job.objects.get(pk=backup.job_id).is_active, timeout=120, message="the backup to end")
        proxy.bytes_per_second = None

        backup.refresh_from_db()
        assert backup.status == Backup.Status.SUCCEEDED, backup.error
        assert backup_worker.backup_verify(backup=backup).ok
        wait_for(lambda: dockercli.container_state(user) == "running", timeout=30,
                 message="the container to restart")

        wait_for(lambda: not Job.objects.get(pk=second.job_id).is_active, timeout=120, message="the second backup")
        second.refresh_from_db()
        assert second.status == Backup.Status.SUCCEEDED, second.error
        assert second.started_at >= backup.finished_at  # it ran after the first, never beside it
    finally:
        proxy.close()


def test_visibility_timeout_outlasts_every_task_time_limit_and_locks_outlast_the_stale_limit():
    from project.celery import app

    app.loader.import_default_modules()
    limits = {name: task.time_limit for name, task in app.tasks.items() if getattr(task, "time_limit", None)}
    assert limits, "no task declares a time limit: the check below would prove nothing"
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > max(limits.values()), limits
    # A live job's lock must not expire before its owner could be presumed dead, and
    # the owner is presumed dead only after many missed heartbeats.
    assert settings.LOCK_TTL_SECONDS > settings.JOB_STALE_SECONDS >= 10 * settings.JOB_HEARTBEAT_SECONDS
    assert app.conf.worker_lost_wait <= 5
