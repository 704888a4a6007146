"""The backup handler against the real engine, run in this process (fast), one behaviour each."""

import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups import recovery, services, worker
from backups.models import Backup
from backups.storage import get_storage, manifest_key
from jobs.models import Job, ResourceLock
from jobs.locks import lock_acquire, lock_release, volume_lock
from jobs.services import job_request_cancel
from tests import dockercli
from tests.backups.conftest import run_backup
from tests.backups.engineproxy import EngineProxy
from tests.backups.fidelity import fill_awkward, mountpoint, snapshot
from tests.conftest import wait_for
from volumes import engine

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


# Exits on SIGTERM at once (a bare `sleep` as PID 1 ignores it and docker waits 30 s).
SERVICE = "trap 'exit 0' TERM; sleep 3600 & wait"


def helpers_of(job_id: int) -> list[str]:
    return dockercli.docker("ps", "-aq", "--filter", f"label=cargohold.job={job_id}").split()


def new_backup(volume: str, **kwargs) -> Backup:
    return services.backup_start(volume_name=volume, **kwargs)


@pytest.fixture
def awkward_volume(volume_with_files):
    name = volume_with_files("true")
    fill_awkward(mountpoint(name))
    return name


def test_zstd_archive_extracts_with_host_tar_and_everything_survives(no_enqueue, backup_root, awkward_volume, tmp_path):
    backup = run_backup(new_backup(awkward_volume))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.job.status == Job.Status.SUCCEEDED
    archive_path = Path(backup.location)
    target = tmp_path / "restored"
    target.mkdir()
    subprocess.run(
        f"zstd -d -c '{archive_path}' | tar --numeric-owner --xattrs --xattrs-include='*' -xpf - -C '{target}'",
        shell=True, check=True,
    )
    original = snapshot(mountpoint(awkward_volume), extended=False)
    restored = snapshot(target / "data", extended=False)
    assert restored == original
    assert restored[b"capable"]["cap"]  # the file capability is in the archive
    assert b"caf\xe9-\xff.txt" in restored


def test_gzip_archive_restores_with_the_recipe_in_a_container(no_enqueue, backup_root, awkward_volume, tmp_path):
    (mountpoint(awkward_volume) / "big.bin").write_bytes(os.urandom(9 << 20))  # several gzip members

    backup = run_backup(new_backup(awkward_volume, compression="gzip"))
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.location.endswith(".tar.gz")
    fresh = dockercli.create_volume()

    # The usual recipe's restore, in a busybox container: tar xzf backup.tar.gz -C /
    dockercli.docker(
        "run", "--rm", "--label", dockercli.TEST_LABEL, "-v", f"{fresh}:/data",
        "-v", f"{Path(backup.location).parent}:/backup:ro", dockercli.HELPER_IMAGE,
        "tar", "xzf", f"/backup/{backup.file_name}", "-C", "/",
    )

    assert snapshot(mountpoint(fresh), extended=False, capabilities=False) == snapshot(mountpoint(awkward_volume), extended=False, capabilities=False)


def test_the_row_and_the_manifest_describe_the_archive(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files()

    backup = run_backup(new_backup(name))

    storage = get_storage()
    manifest = storage.read_json(manifest_key(backup.key))
    assert manifest == backup.manifest
    assert manifest["volume"]["name"] == name and manifest["volume"]["driver"] == "local"
    assert manifest["volume"]["labels"]["cargohold.test"] == dockercli.RUN_ID
    assert manifest["archive"]["sha256"] == backup.sha256 == hashlib.sha256(Path(backup.location).read_bytes()).hexdigest()
    assert manifest["archive"]["compressed_bytes"] == backup.size_bytes == Path(backup.location).stat().st_size
    assert manifest["uncompressed_bytes"] == backup.bytes_read > backup.size_bytes
    assert manifest["file_count"] == backup.file_count == 4  # hello, random, link, hard
    assert manifest["format_version"] == 1 and manifest["cargohold_version"]
    assert manifest["engine"]["id"] and manifest["engine"]["host_name"]
    assert manifest["started_at"].endswith("Z") and manifest["finished_at"].endswith("Z")
    assert backup.verified and backup.verified_at
    assert backup.key.startswith(f"{name}/{name}-") and backup.key.endswith("Z.tar.zst")
    assert backup.job.progress_done == backup.bytes_read
    assert Job.objects.get(pk=backup.job_id).result["backup"] == backup.pk


def test_secrets_in_driver_options_stay_out_of_the_manifest(no_enqueue, backup_root):
    from volumes.services import mirror_sync

    name = dockercli.create_volume(driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=0"})
    mirror_sync()
    from project.redact import scrubbed_options

    scrubbed, redacted = scrubbed_options({"o": "username=u,password=hunter2,vers=3", "type": "cifs"})
    assert "hunter2" not in json.dumps(scrubbed) and redacted == ["o"]

    backup = run_backup(new_backup(name))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.manifest["volume"]["options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=0"}


def test_volume_removed_while_queued_fails_with_that_message_and_is_not_recreated(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files()
    backup = new_backup(name)
    dockercli.docker("volume", "rm", name)

    backup = run_backup(backup)

    assert backup.status == Backup.Status.FAILED
    assert backup.job.status == Job.Status.FAILED
    assert "no longer exists" in backup.job.error and name in backup.error
    assert not dockercli.volume_exists(name)
    assert list(get_storage().list_keys()) == []
    from volumes.models import Volume

    assert Volume.objects.get(name=name).is_gone  # the mirror was refreshed


def test_a_second_backup_waits_for_the_lock_then_runs(no_enqueue, backup_root, settings, volume_with_files):
    name = volume_with_files()
    settings.BACKUP_LOCK_WAIT_SECONDS = 30
    held = lock_acquire(resource=volume_lock(name), owner="a restore", ttl=__import__("datetime").timedelta(minutes=5))
    threading.Timer(2.0, lambda: lock_release(resource=held.resource, owner="a restore")).start()

    backup = run_backup(new_backup(name))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert (backup.started_at - backup.job.started_at).total_seconds() > 1.5  # its duration leaves out the wait


def test_a_backup_is_refused_when_the_volume_stays_busy(no_enqueue, backup_root, settings, volume_with_files):
    from datetime import timedelta

    name = volume_with_files()
    settings.BACKUP_LOCK_WAIT_SECONDS = 1
    lock_acquire(resource=volume_lock(name), owner="job 999 (restore) on elsewhere", ttl=timedelta(minutes=5))

    backup = run_backup(new_backup(name))

    assert backup.status == Backup.Status.FAILED
    assert f"{volume_lock(name)} is busy: job 999 (restore) on elsewhere holds it" in backup.error
    assert list(get_storage().list_keys()) == []
    assert ResourceLock.objects.get(resource=volume_lock(name)).owner.startswith("job 999")


def _started_at(container: str) -> str:
    return json.loads(dockercli.docker("inspect", container))[0]["State"]["StartedAt"]


def test_stop_option_stops_running_users_and_starts_them_again_in_reverse_order(no_enqueue, backup_root, volume_with_files):
    from volumes.services import mirror_sync

    name = volume_with_files()
    first = dockercli.run_container(f"{name}:/srv", name=dockercli.unique_name("a"), command=SERVICE)
    second = dockercli.run_container(f"{name}:/srv:ro", name=dockercli.unique_name("b"), command=SERVICE)
    idle = dockercli.run_container(f"{name}:/srv", start=False)
    before = {c: _started_at(c) for c in (first, second)}
    mirror_sync()

    backup = run_backup(new_backup(name, stop_containers=True))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert [c["name"] for c in backup.stopped_containers] == sorted([first, second])
    assert not backup.restart_pending
    for c in (first, second):
        assert dockercli.container_state(c) == "running"
        assert _started_at(c) != before[c]  # it was really stopped and started
    assert dockercli.container_state(idle) == "created"  # only running containers are touched
    a, b = sorted([first, second])
    assert _started_at(b) < _started_at(a)  # reverse order: the last stopped starts first
    assert backup.manifest["stopped_containers"] == [a, b]


def test_containers_labelled_stop_during_backup_are_always_stopped(no_enqueue, backup_root, volume_with_files):
    from volumes.services import mirror_sync

    name = volume_with_files()
    plain = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    labelled = dockercli.run_container(f"{name}:/srv", labels={"cargohold.stop-during-backup": "true"}, command=SERVICE)
    before = _started_at(plain)
    mirror_sync()

    backup = run_backup(new_backup(name, stop_containers=False))

    assert [c["name"] for c in backup.stopped_containers] == [labelled]
    assert _started_at(plain) == before
    assert dockercli.container_state(labelled) == "running"


def test_the_volume_label_sets_the_default_of_the_stop_option(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files(labels={"cargohold.stop-during-backup": "true"})

    assert new_backup(name).stop_containers is True
    assert new_backup(name, stop_containers=False).stop_containers is False


def test_stopped_containers_are_started_again_when_the_backup_fails(no_enqueue, settings, tmp_path, volume_with_files):
    from volumes.services import mirror_sync

    name = volume_with_files()
    user = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    mirror_sync()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("storage is a file: every write fails")
    settings.BACKUP_ROOT = blocker

    backup = run_backup(new_backup(name, stop_containers=True))

    assert backup.status == Backup.Status.FAILED
    assert "backup folder" in backup.error
    assert [c["name"] for c in backup.stopped_containers] == [user]
    assert dockercli.container_state(user) == "running"
    assert not backup.restart_pending


def test_recovery_starts_containers_a_crashed_backup_left_stopped(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files()
    user = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    cid = json.loads(dockercli.docker("inspect", user))[0]["Id"]
    backup = new_backup(name, stop_containers=True)
    # What a backup killed mid-way leaves: recorded, stopped, its job failed by the sweep.
    Backup.objects.filter(pk=backup.pk).update(stopped_containers=[{"id": cid, "name": user}], restart_pending=True)
    dockercli.docker("stop", "-t", "1", user)
    Job.objects.filter(pk=backup.job_id).update(status=Job.Status.FAILED, error="The worker running this job stopped")

    report = recovery.backups_recover()

    backup.refresh_from_db()
    assert dockercli.container_state(user) == "running"
    assert not backup.restart_pending and backup.pk in report["restarted"]
    assert backup.status == Backup.Status.FAILED and "worker" in backup.error
    assert recovery.backups_recover()["restarted"] == []  # done once, not again


def test_cancel_mid_stream_removes_the_partial_file_and_restarts_containers(no_enqueue, backup_root, settings, tmp_path, volume_with_files):
    from volumes.services import mirror_sync

    name = volume_with_files("head -c 20000000 /dev/urandom > /data/big.bin")
    user = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    mirror_sync()
    proxy = EngineProxy(str(tmp_path / "engine.sock")).start()
    proxy.bytes_per_second = 2_000_000  # a slow disk: the stream takes about ten seconds
    settings.DOCKER_HOST = proxy.url
    settings.DATA_CHANNEL = "attach"  # the data goes through the proxy (a FIFO would bypass it)
    engine.reset_client()
    backup = new_backup(name, stop_containers=True)
    try:
        runner = threading.Thread(target=run_backup, args=(backup,))
        runner.start()
        wait_for(lambda: Job.objects.get(pk=backup.job_id).progress_done > 1_000_000, timeout=60,
                 message="the stream to begin")
        job_request_cancel(job=Job.objects.get(pk=backup.job_id))
        runner.join(timeout=60)
    finally:
        engine.reset_client()
        proxy.close()

    backup.refresh_from_db()
    assert backup.status == Backup.Status.CANCELLED
    assert Job.objects.get(pk=backup.job_id).status == Job.Status.CANCELLED
    assert dockercli.container_state(user) == "running"
    assert list(get_storage().list_keys()) == []
    assert not list(Path(backup_root).rglob(".tmp-*"))
    assert helpers_of(backup.job_id) == []  # the stream was closed, so the helper could go


def test_engine_connection_lost_mid_stream_fails_cleanly_and_the_next_backup_succeeds(no_enqueue, backup_root, settings, tmp_path, volume_with_files):
    name = volume_with_files("head -c 30000000 /dev/urandom > /data/big.bin")
    proxy = EngineProxy(str(tmp_path / "engine.sock")).start()
    proxy.break_after = 5_000_000
    settings.DOCKER_HOST = proxy.url
    settings.DATA_CHANNEL = "attach"  # the data goes through the proxy (a FIFO would bypass it)
    engine.reset_client()
    try:
        backup = run_backup(new_backup(name))
    finally:
        engine.reset_client()
        proxy.close()
        settings.DOCKER_HOST = ""

    assert proxy.broken.is_set()
    assert backup.status == Backup.Status.FAILED and backup.job.status == Job.Status.FAILED
    assert "broke off" in backup.error or "truncated" in backup.error, backup.error
    assert "Unexpected" not in backup.error
    assert helpers_of(backup.job_id) == []
    assert list(get_storage().list_keys()) == [] and not list(Path(backup_root).rglob(".tmp-*"))
    assert not ResourceLock.objects.filter(resource=volume_lock(name)).exists()

    again = run_backup(new_backup(name))
    assert again.status == Backup.Status.SUCCEEDED, again.error


@pytest.fixture
def tiny_backup_root(settings, tmp_path):
    """BACKUP_ROOT on a 2 MiB tmpfs: a full disk, for real."""
    root = tmp_path / "tiny"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)], check=True)
    settings.BACKUP_ROOT = root
    yield root
    subprocess.run(["umount", "-l", str(root)], check=False)


def test_disk_full_fails_cleanly_and_the_next_backup_succeeds(no_enqueue, tiny_backup_root, settings, tmp_path, volume_with_files):
    name = volume_with_files("head -c 8000000 /dev/urandom > /data/big.bin")

    backup = run_backup(new_backup(name))

    assert backup.status == Backup.Status.FAILED and backup.job.status == Job.Status.FAILED
    assert "No space left on device" in backup.error
    leftovers = [p for p in tiny_backup_root.rglob("*") if p.is_file()]
    assert leftovers == []
    settings.BACKUP_ROOT = tmp_path / "roomy"
    again = run_backup(new_backup(name))
    assert again.status == Backup.Status.SUCCEEDED, again.error


def test_verify_reports_a_corrupted_archive_and_the_command_fails(no_enqueue, backup_root, volume_with_files, capsys):
    name = volume_with_files()
    backup = run_backup(new_backup(name))
    call_command("verify_backup", str(backup.pk))
    assert "Verified" in capsys.readouterr().out
    with open(backup.location, "r+b") as f:  # bit rot in the middle
        f.seek(backup.size_bytes // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))

    with pytest.raises(CommandError, match="SHA-256"):
        call_command("verify_backup", str(backup.pk))

    backup.refresh_from_db()
    assert not backup.verified and "SHA-256" in backup.verify_error
    from accounts.models import AuditEvent

    assert AuditEvent.objects.filter(action="backup_verify", result="error", object_name=str(backup.pk)).exists()


def test_verify_job_marks_a_truncated_archive(no_enqueue, backup_root, volume_with_files):
    from jobs.runner import job_perform

    name = volume_with_files()
    backup = run_backup(new_backup(name))
    os.truncate(backup.location, backup.size_bytes - 100)

    job = services.backup_verify_start(backup=backup)
    job_perform(job.pk)

    job.refresh_from_db()
    backup.refresh_from_db()
    assert job.status == Job.Status.FAILED and "Verification failed" in job.error
    assert not backup.verified and backup.verify_error


def test_rescan_rebuilds_the_catalogue_from_manifests(no_enqueue, backup_root, volume_with_files, capsys):
    name = volume_with_files()
    first = run_backup(new_backup(name))
    second = run_backup(new_backup(name, compression="gzip"))
    facts = {b.uid: (b.key, b.sha256, b.size_bytes, b.file_count, b.compression) for b in (first, second)}
    Backup.objects.all().delete()  # the database is lost
    orphan = Path(backup_root) / name / "stray.tar.zst"
    orphan.write_bytes(b"no manifest")
    (Path(backup_root) / name / "bad.tar.zst.manifest.json").write_text('{"format": "something else"}')

    call_command("rescan_backups")

    out = capsys.readouterr()
    assert "added 2" in out.out and "unreadable manifests 1" in out.out
    assert "stray.tar.zst" in out.err
    rebuilt = {b.uid: (b.key, b.sha256, b.size_bytes, b.file_count, b.compression) for b in Backup.objects.all()}
    assert rebuilt == facts
    assert all(b.status == Backup.Status.SUCCEEDED and b.volume_name == name for b in Backup.objects.all())

    call_command("rescan_backups")  # idempotent
    assert Backup.objects.count() == 2
    gone = Backup.objects.first()
    os.unlink(gone.location)
    os.unlink(gone.location + ".manifest.json")
    call_command("rescan_backups")
    gone.refresh_from_db()
    assert gone.missing and not gone.is_restorable


def test_rescan_gives_each_found_backup_a_succeeded_job_of_its_own(no_enqueue, backup_root, volume_with_files):
    from backups.catalogue import backups_rescan

    name = volume_with_files()
    made = run_backup(new_backup(name))
    Backup.objects.all().delete()  # the database is lost; the jobs of that time go with it
    Job.objects.all().delete()

    report = backups_rescan()

    found = Backup.objects.get()
    assert report["added"] == [found.pk] and found.uid == made.uid
    assert (found.job.kind, found.job.status, found.job.trigger) == ("backup_found", Job.Status.SUCCEEDED, "rescan")
    assert found.job.end_handled and found.job.finished_at is not None  # ended: no worker, no on_end
    assert found.status == Backup.Status.SUCCEEDED and found.is_restorable
    assert Backup.objects.filter(status=Backup.Status.SUCCEEDED).count() == 1
    assert found.started_at == made.started_at


def _parent_context(name: str):
    """A running job of this process, as a restore in place is when it takes its safety backup."""
    from django.utils import timezone

    from jobs.runner import JobContext, worker_id
    from jobs.services import job_create

    parent = job_create(kind="restore_in_place", target=name, enqueue=False)
    Job.objects.filter(pk=parent.pk).update(status=Job.Status.RUNNING, started_at=timezone.now(),
                                            heartbeat_at=timezone.now(), worker=worker_id())
    parent.refresh_from_db()
    return JobContext(parent)


def _safety_row(name: str) -> Backup:
    from jobs.services import job_create
    from volumes.models import Volume

    child = job_create(kind=services.KIND_BACKUP, target=name, enqueue=False)
    return Backup.objects.create(job=child, volume=Volume.objects.get(name=name), volume_name=name,
                                 origin=Backup.Origin.SAFETY)


def test_backup_write_fills_a_row_with_its_own_job_while_the_caller_holds_the_volume_lock(
        no_enqueue, backup_root, volume_with_files):
    from accounts.models import AuditEvent
    from jobs.runner import job_inline

    name = volume_with_files()
    parent = _parent_context(name)
    backup = _safety_row(name)

    with parent.lock(volume_lock(name)):
        with job_inline(backup.job, parent=parent) as ctx:
            worker.backup_write(ctx, backup)
        holder = ResourceLock.objects.get(resource=volume_lock(name))

    backup.refresh_from_db()
    assert holder.job_id == parent.job.pk  # the caller's lock, never taken again inside
    assert backup.status == Backup.Status.SUCCEEDED and backup.job_id != parent.job.pk
    assert backup.verified and Path(backup.location).is_file()
    assert get_storage().exists(manifest_key(backup.key))
    assert Job.objects.get(pk=parent.job.pk).status == Job.Status.RUNNING  # the caller's job goes on
    assert AuditEvent.objects.filter(action="backup_finish", object_name=name, result="ok").count() == 1


def test_a_failed_backup_write_fails_only_its_own_job(no_enqueue, backup_root, volume_with_files):
    from accounts.models import AuditEvent
    from jobs.runner import job_inline
    from project.errors import CargoholdError

    name = volume_with_files()
    parent = _parent_context(name)
    backup = _safety_row(name)
    dockercli.docker("volume", "rm", name)

    with pytest.raises(CargoholdError, match="no longer exists"):
        with job_inline(backup.job, parent=parent) as ctx:
            worker.backup_write(ctx, backup)

    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED and "no longer exists" in backup.error
    assert Job.objects.get(pk=parent.job.pk).status == Job.Status.RUNNING
    assert list(get_storage().list_keys()) == []
    assert AuditEvent.objects.filter(action="backup_finish", object_name=name, result="error").count() == 1


def test_list_backups_json_has_the_fields_scripts_need(no_enqueue, backup_root, volume_with_files, capsys):
    name = volume_with_files()
    other = volume_with_files()
    backup = run_backup(new_backup(name))
    run_backup(new_backup(other))

    call_command("list_backups", "--volume", name, "--json")

    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    for field in ("id", "volume", "status", "started_at", "finished_at", "size_bytes", "sha256", "compression",
                  "verified", "location"):
        assert field in row
    assert (row["id"], row["volume"], row["status"], row["sha256"], row["location"], row["verified"]) == (
        backup.pk, name, "succeeded", backup.sha256, backup.location, True
    )


def test_delete_removes_archive_manifest_and_row(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files()
    backup = run_backup(new_backup(name))
    path = Path(backup.location)

    worker.backup_delete(backup=backup)

    assert not path.exists() and not Path(str(path) + ".manifest.json").exists()
    assert not Backup.objects.filter(pk=backup.pk).exists()


def test_recovery_removes_temporary_files_of_dead_backups_only(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files()
    dead = new_backup(name)
    alive = new_backup(name)
    storage = get_storage()
    dead_writer = storage.open_temp_writer(f"{name}/x.tar.zst", token=dead.uid.hex)
    alive_writer = storage.open_temp_writer(f"{name}/y.tar.zst", token=alive.uid.hex)
    Job.objects.filter(pk=dead.job_id).update(status=Job.Status.FAILED)
    Job.objects.filter(pk=alive.job_id).update(status=Job.Status.RUNNING)

    recovery.backups_recover()

    assert not dead_writer.temp.exists() and alive_writer.temp.exists()


def test_a_volume_that_cannot_be_mounted_fails_with_the_engines_words_on_its_page(no_enqueue, backup_root):
    from volumes.models import Volume
    from volumes.services import mirror_sync

    name = dockercli.create_volume(driver_opts={"type": "nfs", "o": "addr=127.0.0.1,soft,timeo=5,retrans=1,nolock",
                                                "device": ":/nothing"})
    mirror_sync()

    backup = run_backup(new_backup(name))

    assert backup.status == Backup.Status.FAILED
    # The engine's own words (it says "error while mounting volume" when starting a
    # container, "failed to mount local volume" when creating the data helper).
    assert "no such device" in backup.error and "mount" in backup.error and "Unexpected" not in backup.error
    assert "no such device" in Volume.objects.get(name=name).last_error
    assert list(get_storage().list_keys()) == []
