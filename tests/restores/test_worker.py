"""End-to-end restores on real worker processes: the CLI, and workers killed mid-write."""

import os

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Job
from restores import services
from restores.models import Restore
from tests import dockercli
from tests.conftest import wait_for
from tests.restores.conftest import listing, run_backup_now, store_zero_backup, wait_until_writing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

SERVICE = "trap 'exit 0' TERM; while :; do sleep 1; done"
ZEROS = 1536 << 20  # 1.5 GiB of zeros: a few seconds of writing for the engine


def test_the_cli_restores_through_the_worker_and_waits_for_the_outcome(celery_worker, make_volume, capsys):
    source = make_volume("mkdir /data/d && echo hello > /data/d/hello && chown -R 7:7 /data/d")
    backup = run_backup_now(source)
    target = dockercli.unique_name("restored")

    call_command("restore_backup", str(backup.pk), "--to", target, "--wait", "--timeout", "120")

    job = Job.objects.get(pk=int(capsys.readouterr().out.strip()))
    assert job.status == "succeeded" and job.kind == "restore" and job.trigger == "cli"
    assert listing(target)["entries"] == listing(source)["entries"]
    with pytest.raises(CommandError, match="already exists"):
        call_command("restore_backup", str(backup.pk), "--to", target, "--wait")


def _kill_mid_write(worker, restore):
    """Wait until the worker is writing into the volume (bytes reported), then SIGKILL it."""
    wait_until_writing(restore, timeout=120)
    worker.kill()
    restore.refresh_from_db()
    assert restore.written_at is None, "the write finished before the kill: nothing was tested"


def test_a_worker_killed_mid_restore_into_a_new_volume_leaves_it_failed_and_removable(worker_factory, make_volume):
    queue = f"{os.environ['CELERY_QUEUE']}-restore-new-kill"
    source = make_volume(None)
    backup = store_zero_backup(source, ZEROS)
    target = dockercli.unique_name("restored")
    worker = worker_factory(concurrency=1, name="doomed", queue=queue)
    restore = services.restore_new_start(backup=backup, volume_name=target, queue=queue)
    _kill_mid_write(worker, restore)

    worker_factory(concurrency=1, name="rescuer", queue=queue)  # its start-up recovery runs
    wait_for(lambda: Restore.objects.get(pk=restore.pk).partial, timeout=60, message="the restore marked partial")
    restore.refresh_from_db()
    assert restore.status == "failed" and restore.job.status == "failed"
    assert "stopped (killed or lost)" in restore.job.error
    assert dockercli.volume_exists(target)
    from volumes.models import Volume

    assert "Partial restore" in Volume.objects.get(name=target).last_error

    job = services.partial_volume_remove_start(restore=restore, queue=queue)
    wait_for(lambda: not Job.objects.get(pk=job.pk).is_active, timeout=60, message="the removal job")
    restore.refresh_from_db()
    assert Job.objects.get(pk=job.pk).status == "succeeded", Job.objects.get(pk=job.pk).error
    assert not dockercli.volume_exists(target) and restore.partial is False and restore.partial_removed_at


def test_a_worker_killed_mid_restore_in_place_is_put_back_at_the_next_worker_start(worker_factory, make_volume):
    from volumes.services import mirror_sync

    queue = f"{os.environ['CELERY_QUEUE']}-restore-in-place-kill"
    volume = make_volume("mkdir /data/app && echo current > /data/app/state && chown -R 33:33 /data/app")
    before = listing(volume)
    running = dockercli.run_container(f"{volume}:/data", command=SERVICE)
    mirror_sync()
    backup = store_zero_backup(volume, ZEROS)
    worker = worker_factory(concurrency=1, name="doomed", queue=queue)
    restore = services.restore_in_place_start(backup=backup, confirm_name=volume, confirm_imported=True, queue=queue)
    _kill_mid_write(worker, restore)
    assert dockercli.container_state(running) == "exited" and restore.emptied_at and restore.rollback_pending

    worker_factory(concurrency=1, name="rescuer", queue=queue)
    wait_for(lambda: Restore.objects.get(pk=restore.pk).rolled_back_at, timeout=120,
             message="the volume to be put back from the safety backup")
    restore.refresh_from_db()
    assert restore.status == "failed" and restore.rollback_pending is False
    assert listing(volume)["entries"] == before["entries"]
    wait_for(lambda: dockercli.container_state(running) == "running", timeout=30, message="the container to run")
    restore.refresh_from_db()
    assert restore.restart_pending is False
    assert "put back from safety backup" in restore.outcome
