"""Restores in place hold the volume: a container started by someone else while the
restore writes is caught, the restore fails naming it, and the previous content is put
back — real worker, real engine, the intruder started with the docker CLI."""

import json
import os

import pytest

from jobs.models import Job
from restores import services
from restores.models import Restore
from tests import dockercli
from tests.conftest import wait_for
from tests.restores.conftest import listing, store_zero_backup, wait_until_writing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

SERVICE = "trap 'exit 0' TERM; while :; do sleep 1; done"
ZEROS = 1536 << 20  # 1.5 GiB of zeros: a few seconds of writing for the engine
BEFORE = "mkdir /data/app && echo current > /data/app/state && head -c 50000 /dev/urandom > /data/app/blob"


def _container_id(name: str) -> str:
    return json.loads(dockercli.docker("inspect", name))[0]["Id"]


def _start_restore_and_wait_for_the_write(worker_factory, make_volume, suffix: str):
    from volumes.services import mirror_sync

    queue = f"{os.environ['CELERY_QUEUE']}-held-{suffix}"
    volume = make_volume(BEFORE)
    before = listing(volume)
    mirror_sync()
    backup = store_zero_backup(volume, ZEROS)
    worker_factory(concurrency=1, name="restorer", queue=queue)
    restore = services.restore_in_place_start(backup=backup, confirm_name=volume, confirm_imported=True,
                                               queue=queue)

    wait_until_writing(restore, timeout=180)
    return volume, before, restore


def _still_writing(restore: Restore) -> None:
    restore.refresh_from_db()
    assert restore.written_at is None, "the write finished before the intruder started: nothing was tested"


def _wait_for_the_end(restore: Restore) -> Restore:
    wait_for(lambda: not Job.objects.get(pk=restore.job_id).is_active, timeout=300, message="the restore to end")
    restore.refresh_from_db()
    return restore


def test_a_container_started_during_the_write_fails_the_restore_and_the_volume_is_put_back(
        worker_factory, make_volume):
    volume, before, restore = _start_restore_and_wait_for_the_write(worker_factory, make_volume, "running")

    intruder = dockercli.run_container(f"{volume}:/x", command=SERVICE)
    _still_writing(restore)
    first_start = json.loads(dockercli.docker("inspect", intruder))[0]["State"]["StartedAt"]
    restore = _wait_for_the_end(restore)

    assert restore.status == "failed", restore.outcome
    short = _container_id(intruder)[:12]
    assert f"container {intruder} ({short}) was started while the restore wrote" in restore.error, restore.error
    assert "previous content was put back from safety backup" in restore.error, restore.error
    assert restore.rollback_pending is False and restore.rolled_back_at
    assert listing(volume)["entries"] == before["entries"]
    # The intruder was stopped for the put-back and started again on the previous content.
    assert dockercli.container_state(intruder) == "running"
    assert json.loads(dockercli.docker("inspect", intruder))[0]["State"]["StartedAt"] != first_start
    assert restore.restart_pending is False
    assert {"id": _container_id(intruder), "name": intruder} in restore.stopped_containers


def test_a_container_started_and_removed_again_during_the_write_is_still_caught(worker_factory, make_volume):
    volume, before, restore = _start_restore_and_wait_for_the_write(worker_factory, make_volume, "gone")

    name = dockercli.unique_name("ctr")
    dockercli.docker("run", "--rm", "--name", name, "--label", dockercli.TEST_LABEL, "--network", "none",
                     "-v", f"{volume}:/x", dockercli.HELPER_IMAGE, "sh", "-c", "echo intruder > /x/intruder")
    _still_writing(restore)
    restore = _wait_for_the_end(restore)

    assert restore.status == "failed", restore.outcome
    assert f"container {name} (" in restore.error and "was started while the restore wrote" in restore.error, \
        restore.error
    assert "previous content was put back from safety backup" in restore.error, restore.error
    assert listing(volume)["entries"] == before["entries"]
    assert restore.restart_pending is False
