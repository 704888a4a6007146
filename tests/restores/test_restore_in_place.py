"""Restores in place: containers stopped and started again, a safety backup, and the
volume put back when the write fails — real handler, real engine."""

import json
import tarfile

import pytest

from accounts.models import AuditEvent
from backups.models import Backup
from backups.storage import get_storage
from restores import services
from restores.recovery import restores_recover
from restores.models import Restore
from tests import dockercli
from tests.restores.conftest import listing, member, run_backup_now, run_restore, store_crafted_backup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

OLD = "mkdir -p /data/app && echo old > /data/app/state && head -c 100000 /dev/urandom > /data/app/blob"
# A service that stops when asked (busybox `sleep` as PID 1 would make every stop wait 30 s).
SERVICE = "trap 'exit 0' TERM; while :; do sleep 1; done"
NEW = "rm -rf /data/app && mkdir /data/other && echo new > /data/other/state && echo extra > /data/extra"


def started_at(container: str) -> str:
    return json.loads(dockercli.docker("inspect", container))[0]["State"]["StartedAt"]


def test_restore_in_place_brings_the_old_content_back_with_containers_stopped_meanwhile(
        no_enqueue, backup_root, make_volume, make_user):
    from volumes.services import mirror_sync

    volume = make_volume(OLD)
    old = listing(volume)
    backup = run_backup_now(volume)
    dockercli.fill_volume(volume, NEW)
    changed = listing(volume)
    running = dockercli.run_container(f"{volume}:/data", command=SERVICE)
    stopped = dockercli.run_container(f"{volume}:/data", start=False, command=SERVICE)
    first_start = started_at(running)
    mirror_sync()
    admin = make_user("Admin")

    restore = run_restore(services.restore_in_place_start(backup=backup, confirm_name=volume, user=admin))

    assert restore.status == "succeeded", restore.error
    assert listing(volume)["entries"] == old["entries"]
    # The running container was stopped and started again; the stopped one left alone.
    assert [c["name"] for c in restore.stopped_containers] == [running]
    assert dockercli.container_state(running) == "running" and started_at(running) != first_start
    assert dockercli.container_state(stopped) == "created"
    assert restore.restart_pending is False and restore.emptied_at and restore.written_at
    # The safety backup is a normal, listed backup holding the content just replaced.
    safety = restore.safety_backup
    assert (safety.origin, safety.status, safety.verified, safety.volume_name) == ("safety", "succeeded", True, volume)
    assert safety.manifest["origin"] == "safety" and get_storage().exists(safety.key)
    # Its own job, run inside the restore's (jobs.runner.job_inline): its own status and end.
    assert safety.job_id != restore.job_id and safety.job.kind == "backup" and safety.job.status == "succeeded"
    assert safety.job.params["parent_job"] == restore.job_id and safety.job.end_handled
    assert safety.created_by == admin and restore.created_by == admin
    assert Backup.objects.get(pk=safety.pk, status="succeeded").job_id == safety.job_id
    copy = dockercli.unique_name("safety-copy")
    assert run_restore(services.restore_new_start(backup=safety, volume_name=copy)).status == "succeeded"
    assert listing(copy)["entries"] == changed["entries"]
    actions = set(AuditEvent.objects.filter(object_name=volume).values_list("action", flat=True))
    assert {"restore_start", "restore_finish", "backup_start", "backup_finish"} <= actions


def test_a_tampered_archive_is_refused_before_any_container_is_stopped(no_enqueue, backup_root, make_volume):
    from volumes.services import mirror_sync

    volume = make_volume(OLD)
    backup = run_backup_now(volume)
    dockercli.fill_volume(volume, NEW)
    before = listing(volume)
    running = dockercli.run_container(f"{volume}:/data", command=SERVICE)
    first_start = started_at(running)
    mirror_sync()
    path = get_storage().local_path(backup.key)
    path.write_bytes(path.read_bytes()[:-100] + bytes(100))

    restore = run_restore(services.restore_in_place_start(backup=backup, confirm_name=volume))

    assert restore.status == "failed" and "The volume was not touched." in restore.error
    assert listing(volume)["entries"] == before["entries"]
    assert started_at(running) == first_start  # never stopped
    assert restore.safety_backup is None and not Backup.objects.filter(origin="safety").exists()


def test_a_write_that_fails_after_emptying_puts_the_safety_backup_back(no_enqueue, backup_root, make_volume):
    from volumes.services import mirror_sync

    volume = make_volume(NEW)
    before = listing(volume)
    running = dockercli.run_container(f"{volume}:/data", command=SERVICE)
    mirror_sync()
    # Passes every safety rule, but the engine cannot write it: data/f is a file, then
    # data/f/x needs it to be a folder. The engine stops half-way, after data/a.
    hostile = store_crafted_backup(volume, [
        member("data", kind=tarfile.DIRTYPE), member("data/a", data=b"a" * 5000), member("data/f"),
        member("data/f/x"),
    ])

    restore = run_restore(services.restore_in_place_start(backup=hostile, confirm_name=volume,
                                                          confirm_imported=True))

    assert restore.status == "failed"
    assert "previous content was put back from safety backup" in restore.error, restore.error
    assert restore.emptied_at and not restore.written_at
    assert restore.rollback_pending is False and restore.rolled_back_at
    assert listing(volume)["entries"] == before["entries"]
    assert dockercli.container_state(running) == "running" and restore.restart_pending is False
    assert AuditEvent.objects.filter(action="restore_rollback", object_name=volume, result="ok").exists()


def test_restore_in_place_is_refused_for_a_wrong_confirmation_or_a_missing_volume(no_enqueue, backup_root,
                                                                                  make_volume):
    from project.errors import Refused
    from volumes.services import mirror_sync

    volume = make_volume("echo a > /data/a")
    backup = run_backup_now(volume)
    with pytest.raises(Refused, match="does not match"):
        services.restore_in_place_start(backup=backup, confirm_name=volume + "x")
    dockercli.docker("volume", "rm", volume)
    mirror_sync()
    with pytest.raises(Refused, match="not on the engine"):
        services.restore_in_place_start(backup=backup, confirm_name=volume)
    assert not Restore.objects.exists()


def test_recovery_puts_back_a_volume_whose_restore_died_after_emptying(no_enqueue, backup_root, make_volume):
    """What a worker start does after a kill (the kill itself is tested with a real worker)."""
    from django.utils import timezone

    from jobs.models import Job
    from volumes.services import mirror_sync

    volume = make_volume(NEW)
    before = listing(volume)
    running = dockercli.run_container(f"{volume}:/data", command=SERVICE)
    mirror_sync()
    safety = run_backup_now(volume)
    dockercli.docker("stop", "-t", "0", running)
    dockercli.fill_volume(volume, "rm -rf /data/* && echo half > /data/half")
    job = Job.objects.create(kind="restore_in_place", target=volume, status="failed", finished_at=timezone.now(),
                             error="The worker running this job stopped (killed or lost) before it finished.")
    restore = Restore.objects.create(
        job=job, backup=safety, mode="in_place", volume_name=volume, safety_backup=safety,
        emptied_at=timezone.now(), rollback_pending=True, restart_pending=True,
        stopped_containers=[{"id": json.loads(dockercli.docker("inspect", running))[0]["Id"], "name": running}],
    )

    report = restores_recover()

    restore.refresh_from_db()
    assert report["rolled_back"] == [restore.pk] and report["restarted"] == [restore.pk]
    assert restore.status == "failed" and restore.rollback_pending is False and not restore.restart_pending
    assert listing(volume)["entries"] == before["entries"]
    assert dockercli.container_state(running) == "running"
    assert restores_recover() == {"rolled_back": [], "restarted": [], "skipped": []}


def _died_after_emptying(volume: str, safety, running: str | None = None) -> Restore:
    """A restore row as a worker killed after emptying the volume leaves it."""
    from django.utils import timezone

    from jobs.models import Job

    job = Job.objects.create(kind="restore_in_place", target=volume, status="failed", finished_at=timezone.now(),
                             error="The worker running this job stopped (killed or lost) before it finished.")
    stopped = []
    if running:
        stopped = [{"id": json.loads(dockercli.docker("inspect", running))[0]["Id"], "name": running}]
    return Restore.objects.create(job=job, backup=safety, mode="in_place", volume_name=volume,
                                  safety_backup=safety, emptied_at=timezone.now(), rollback_pending=True,
                                  restart_pending=bool(stopped), stopped_containers=stopped)


def test_the_put_back_button_runs_the_same_repair_as_the_recovery(no_enqueue, backup_root, make_volume):
    from jobs.runner import job_perform

    volume = make_volume(NEW)
    before = listing(volume)
    safety = run_backup_now(volume)
    dockercli.fill_volume(volume, "rm -rf /data/*")
    restore = _died_after_emptying(volume, safety)

    job = services.restore_rollback_start(restore=restore)
    job_perform(job.pk)

    restore.refresh_from_db()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert restore.rollback_pending is False and listing(volume)["entries"] == before["entries"]
    with pytest.raises(Exception, match="nothing to put back"):
        services.restore_rollback_start(restore=restore)


def test_a_new_restore_in_place_waits_until_the_volume_was_put_back_or_dismissed(no_enqueue, backup_root,
                                                                                  make_volume, make_user):
    from project.errors import Refused
    from volumes.services import mirror_sync

    volume = make_volume(NEW)
    running = dockercli.run_container(f"{volume}:/data", command=SERVICE)
    mirror_sync()
    safety = run_backup_now(volume)
    dockercli.docker("stop", "-t", "1", running)
    restore = _died_after_emptying(volume, safety, running)
    with pytest.raises(Refused, match=f"Restore #{restore.pk} has not yet put the previous content"):
        services.restore_in_place_start(backup=safety, confirm_name=volume)

    admin = make_user("Admin")
    services.restore_dismiss(restore=restore, user=admin)

    restore.refresh_from_db()
    assert restore.rollback_pending is False and f"Dismissed by {admin.username}" in restore.rollback_error
    # With nothing to put back, the recovery starts the containers it kept stopped.
    assert restores_recover()["restarted"] == [restore.pk]
    assert dockercli.container_state(running) == "running"
    assert services.restore_in_place_start(backup=safety, confirm_name=volume).mode == "in_place"
    assert AuditEvent.objects.filter(action="restore_dismiss", object_name=volume).exists()


def test_the_cli_restores_in_place_and_exits_non_zero_when_refused(no_enqueue, backup_root, make_volume, capsys):
    from django.core.management import CommandError, call_command

    volume = make_volume(OLD)
    backup = run_backup_now(volume)
    dockercli.fill_volume(volume, NEW)
    call_command("restore_backup", str(backup.pk), "--in-place")  # queued only (no worker here)
    restore = Restore.objects.get(job_id=int(capsys.readouterr().out.strip()))
    assert (restore.mode, restore.trigger, restore.status) == ("in_place", "cli", "queued")
    assert AuditEvent.objects.filter(action="restore_start", actor_name__startswith="cli:").exists()
    with pytest.raises(CommandError, match="already queued or running"):
        call_command("restore_backup", str(backup.pk), "--in-place")
    assert run_restore(restore).status == "succeeded"
    with pytest.raises(CommandError, match="No backup #999999"):
        call_command("restore_backup", "999999", "--to", "x-copy")


def test_a_safety_backup_still_needed_for_a_put_back_cannot_be_deleted(no_enqueue, backup_root, make_volume):
    from backups import services as backup_services
    from backups.worker import backup_delete
    from project.errors import Refused

    volume = make_volume(NEW)
    safety = run_backup_now(volume)
    restore = _died_after_emptying(volume, safety)

    with pytest.raises(Refused, match="safety backup of a restore in place"):
        backup_services.backup_delete_start(backup=safety)
    with pytest.raises(Refused, match="safety backup of a restore in place"):
        backup_delete(backup=safety)
    assert safety.__class__.objects.filter(pk=safety.pk).exists()

    Restore.objects.filter(pk=restore.pk).update(rollback_pending=False)
    backup_delete(backup=safety)
    assert not safety.__class__.objects.filter(pk=safety.pk).exists()


def test_the_previous_content_is_not_put_back_under_a_running_container(no_enqueue, backup_root, make_volume):
    """Someone started a container on the half-restored volume after a crash: emptying the
    volume under it would wreck what it writes. The put-back waits and says why."""
    volume = make_volume(NEW)
    before = listing(volume)
    safety = run_backup_now(volume)
    dockercli.fill_volume(volume, "rm -rf /data/* && echo half > /data/half")
    restore = _died_after_emptying(volume, safety)
    intruder = dockercli.run_container(f"{volume}:/x", command=SERVICE)
    short = json.loads(dockercli.docker("inspect", intruder))[0]["Id"][:12]

    assert restores_recover()["rolled_back"] == []

    restore.refresh_from_db()
    assert restore.rollback_pending is True
    assert f"container {intruder} ({short}) was running with the volume mounted" in restore.rollback_error
    assert dockercli.container_state(intruder) == "running"
    assert listing(volume)["entries"] != before["entries"]  # untouched
    dockercli.docker("stop", "-t", "5", intruder)
    assert restores_recover()["rolled_back"] == [restore.pk]
    assert listing(volume)["entries"] == before["entries"]


def test_the_recovery_leaves_a_restore_alone_while_its_job_is_active(no_enqueue, backup_root, make_volume):
    """Only an ended job's restore is repaired: a running one may still be writing."""
    from jobs.models import Job

    volume = make_volume(NEW)
    before = listing(volume)
    safety = run_backup_now(volume)
    restore = _died_after_emptying(volume, safety)
    Job.objects.filter(pk=restore.job_id).update(status="running", finished_at=None)

    assert restores_recover() == {"rolled_back": [], "restarted": [], "skipped": []}
    restore.refresh_from_db()
    assert restore.rollback_pending is True and restore.phase != "rolling_back"
    assert listing(volume)["entries"] == before["entries"]
