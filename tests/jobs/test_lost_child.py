"""A pool child killed mid-job (the OOM killer, a SIGKILL) fails its job within seconds,
and what the job stopped is started again, while the worker itself lives on."""

import os
import signal

import pytest
from django.db import transaction

from backups import services as backup_services
from backups.models import Backup
from jobs.models import Job, ResourceLock
from tests import dockercli
from tests.backups.engineproxy import backup_streaming, slow_engine_worker
from tests.conftest import wait_for
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

SERVICE = "trap 'exit 0' TERM; sleep 3600 & wait"


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_killed_pool_child_fails_its_backup_within_seconds_and_restarts_its_containers(
    worker_factory, monkeypatch, tmp_path
):
    name = dockercli.create_volume()
    dockercli.fill_volume(name, "head -c 40000000 /dev/urandom > /data/big.bin")
    user = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    mirror_sync()
    worker, queue, proxy = slow_engine_worker(worker_factory, monkeypatch, tmp_path, name="child")
    try:
        backup = backup_streaming(volume_name=name, queue=queue)
        assert dockercli.container_state(user) == "exited"

        job = Job.objects.get(pk=backup.job_id)
        pid = int(job.worker.rpartition(":")[2])
        # The job names the pool child that runs it, not the worker's main process.
        assert pid != worker.proc.pid and _parent_pid(pid) == worker.proc.pid, job.worker
        os.kill(pid, signal.SIGKILL)

        wait_for(lambda: not Job.objects.get(pk=backup.job_id).is_active, timeout=10,
                 message="the job of the killed child to fail")
        proxy.bytes_per_second = None

        job.refresh_from_db()
        assert job.status == Job.Status.FAILED and "stopped" in job.error
        wait_for(lambda: dockercli.container_state(user) == "running", timeout=30,
                 message="the container to restart")
        wait_for(lambda: not Backup.objects.get(pk=backup.pk).restart_pending, timeout=30,
                 message="the backup to record the restart")
        backup.refresh_from_db()
        assert backup.status == Backup.Status.FAILED
        assert not ResourceLock.objects.filter(resource=f"volume:{name}").exists()
        assert worker.proc.poll() is None  # the worker lives on and takes the next job

        with transaction.atomic():
            again = backup_services.backup_start(volume_name=name, queue=queue)
        wait_for(lambda: not Backup.objects.get(pk=again.pk).is_active, timeout=90, message="the next backup")
        again.refresh_from_db()
        assert again.status == Backup.Status.SUCCEEDED, again.error
    finally:
        proxy.close()
