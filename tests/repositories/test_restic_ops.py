"""restic repositories' operations and faults: dedup, forget, prune, verify, wrong
password, a stale lock, a full disk, and the password kept out of sight."""

import json
import subprocess

import pytest

from tests import dockercli
from tests.repositories.restic_fixtures import (
    PASSWORD,
    backup_now,
    host_restic,
    host_snapshots,
    run_job,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _du(path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, check=True).stdout.split()[0])


def test_a_second_backup_of_an_unchanged_volume_adds_almost_nothing(no_enqueue, restic_repo, volume_with_files):
    repo = restic_repo()
    name = volume_with_files("head -c 5000000 /dev/urandom > /data/big.bin && echo x > /data/small.txt")
    first = backup_now(name, repo)
    second = backup_now(name, repo)
    assert first.status == second.status == "succeeded", (first.error, second.error)
    assert first.size_bytes >= 5_000_000
    assert second.size_bytes <= 4096, second.size_bytes  # a tree blob at most: the data is deduplicated
    assert second.snapshot_id != first.snapshot_id and len(host_snapshots(repo)) == 2


def test_deleting_a_restic_backup_forgets_its_snapshot_only_and_prune_frees_its_data(
        no_enqueue, restic_repo, volume_with_files):
    from backups.worker import backup_delete
    from jobs.models import Job
    from repositories.restic_jobs import restic_prune_start

    repo = restic_repo()
    name = volume_with_files("head -c 3000000 /dev/urandom > /data/a.bin")
    old = backup_now(name, repo)
    dockercli.fill_volume(name, "rm /data/a.bin && head -c 1000 /dev/urandom > /data/b.bin")
    kept = backup_now(name, repo)
    before = _du(repo.location.path)

    backup_delete(backup=old)

    assert [s["id"] for s in host_snapshots(repo)] == [kept.snapshot_id]
    job = restic_prune_start(repository=repo)
    run_job(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert _du(repo.location.path) < before - 2_500_000
    assert host_restic(repo, "check").returncode == 0


def test_the_prune_schedule_starts_a_prune_for_each_restic_repository_due(no_enqueue, restic_repo, volume_with_files,
                                                                          settings):
    from repositories.restic_jobs import restic_prune_due

    settings.RESTIC_PRUNE_EVERY_DAYS = 7
    repo = restic_repo()
    idle = restic_repo("idle")  # no backups: nothing to prune
    backup_now(volume_with_files(), repo)
    jobs = restic_prune_due()
    assert [j.target for j in jobs] == [repo.name] and idle.name not in [j.target for j in jobs]
    assert restic_prune_due() == []  # one a week


def test_prune_repository_queues_a_prune_job_and_refuses_a_second_one_or_an_archive_repository(
        no_enqueue, restic_repo, tmp_path):
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from jobs.models import Job
    from repositories.models import Repository

    repo = restic_repo()
    out = io.StringIO()
    call_command("prune_repository", repo.name, stdout=out)
    job = Job.objects.get(pk=int(out.getvalue()))
    assert job.kind == "repository_prune" and job.target == repo.name and job.status == "queued"
    with pytest.raises(CommandError, match="already queued or running"):
        call_command("prune_repository", repo.name, stdout=io.StringIO())
    Repository.objects.create(name="plain", url=str(tmp_path / "plain"), format="archive")
    with pytest.raises(CommandError, match="not a restic repository"):
        call_command("prune_repository", "plain", stdout=io.StringIO())


def test_verify_runs_restic_check_with_the_read_subset(no_enqueue, restic_repo, volume_with_files):
    from backups.services import backup_verify_start

    repo = restic_repo()
    repo.verify_read_subset = "50%"
    repo.save()
    backup = backup_now(volume_with_files(), repo)
    job = backup_verify_start(backup=backup)
    run_job(job.pk)
    job.refresh_from_db()
    backup.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert "50%" in job.result["message"] and backup.verified


def test_verify_reports_a_damaged_pack(no_enqueue, restic_repo, volume_with_files):
    from pathlib import Path

    from backups.services import backup_verify_start

    repo = restic_repo()
    repo.verify_read_subset = "100%"
    repo.save()
    backup = backup_now(volume_with_files(), repo)
    pack = max((p for p in Path(repo.location.path, "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    job = backup_verify_start(backup=backup)
    run_job(job.pk)
    job.refresh_from_db()
    backup.refresh_from_db()
    assert job.status == "failed"
    assert "restic check found problems" in job.error and not backup.verified


def test_a_wrong_password_fails_clearly_and_nothing_is_listed(no_enqueue, restic_repo, volume_with_files):
    from backups.models import Backup

    repo = restic_repo()
    repo.set_secrets(password="not-the-password")
    repo.save()
    backup = backup_now(volume_with_files(), repo)
    assert backup.status == "failed"
    assert f"restic says the password is wrong for {repo.name}" in backup.error
    assert not backup.is_restorable and backup.snapshot_id == ""
    assert not Backup.objects.filter(repository=repo, job__status="succeeded").exists()
    assert host_snapshots(repo) == []


def test_a_stale_lock_left_by_a_killed_helper_does_not_stop_the_next_backup(
        no_enqueue, restic_repo, volume_with_files):
    from pathlib import Path

    from repositories import restic
    from volumes import datahelper

    repo = restic_repo()
    name = volume_with_files()
    # A helper that takes restic's exclusive lock and then waits on stdin (`key passwd`
    # reads the new password): killed there, it leaves the lock behind, as a worker
    # killed mid-operation would.
    command = ["/bin/sh", "-c", restic.SECRET_SCRIPT, "restic", "-r", "/repo", "--no-cache", "key", "passwd"]
    with datahelper.data_helper(None, image=restic._image(), command=command, read_only=True, caps=("DAC_OVERRIDE",),
                                stdin=True, purpose="test-lock", repo_path=repo.location.path,
                                hostname=restic.helper_hostname(), labels={restic.REPOSITORY_LABEL: restic.repository_label_value(repo)}) as h:
        h.write(restic._stdin_lines(repo))
        locks = Path(repo.location.path, "locks")
        from tests.conftest import wait_for

        wait_for(lambda: any(locks.iterdir()), timeout=60, message="restic's lock")
        # Killed while its stdin is still open: leaving the block first would end stdin,
        # and restic, reading EOF, would exit cleanly and take its lock with it (CI saw it).
        from volumes.engine import api

        api().kill(h.container_id)
        api().wait(h.container_id, timeout=60)
    assert any(locks.iterdir())  # the helper is gone, its lock is not
    assert b"locked" in host_restic(repo, "backup", "/etc/hostname", check=False).stderr

    backup = backup_now(name, repo)

    assert backup.status == "succeeded", backup.error
    assert [s["id"] for s in host_snapshots(repo)] == [backup.snapshot_id]


def test_a_lock_held_by_someone_else_is_left_alone_and_named(no_enqueue, restic_repo, volume_with_files):
    repo = restic_repo()
    name = volume_with_files()
    proc = subprocess.Popen(["restic", "-r", repo.location.path, "--no-cache", "key", "passwd"],
                            env={"RESTIC_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        from pathlib import Path

        from tests.conftest import wait_for

        wait_for(lambda: any(Path(repo.location.path, "locks").iterdir()), timeout=60, message="restic's lock")
        backup = backup_now(name, repo)
    finally:
        proc.kill()
        proc.wait()
    assert backup.status == "failed"
    assert "is locked by PID" in backup.error and "run `restic unlock`" in backup.error
    assert host_snapshots(repo) == []


@pytest.fixture
def small_disk(tmp_path):
    path = tmp_path / "small"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_fails_clearly_adds_nothing_and_the_next_backup_succeeds(
        no_enqueue, restic_repo, volume_with_files, small_disk):
    repo = restic_repo(path=small_disk / "repo")
    name = volume_with_files("head -c 60000000 /dev/urandom > /data/big.bin")

    failed = backup_now(name, repo)

    assert failed.status == "failed"
    assert "The repository's disk is full" in failed.error and "nothing was added" in failed.error
    assert host_snapshots(repo) == []
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)  # space is freed
    backup = backup_now(name, repo)
    assert backup.status == "succeeded", backup.error
    assert [s["id"] for s in host_snapshots(repo)] == [backup.snapshot_id]


def test_the_password_is_never_in_the_helpers_inspect_the_rows_or_the_logs(
        no_enqueue, restic_repo, volume_with_files, inspected_helpers, caplog):
    from accounts.models import AuditEvent
    from backups.models import Backup
    from jobs.models import Job

    inspected = inspected_helpers
    repo = restic_repo()
    backup = backup_now(volume_with_files(), repo)
    repo.set_secrets(password="wrong-one-" + PASSWORD)  # a failure's words too
    repo.save()
    failed = backup_now(volume_with_files(), repo)

    assert backup.status == "succeeded" and failed.status == "failed"
    assert sum("cargohold.repository" in text for text in inspected) >= 3  # backup, ls, the failed one
    rows = [json.dumps(list(Job.objects.values()), default=str), json.dumps(list(Backup.objects.values()), default=str),
            json.dumps(list(AuditEvent.objects.values()), default=str)]
    for text in [*inspected, *rows, caplog.text]:
        assert PASSWORD not in text


def test_a_repository_never_initialised_says_so(no_enqueue, restic_repo, volume_with_files):
    repo = restic_repo(init=False)
    backup = backup_now(volume_with_files(), repo)
    assert backup.status == "failed"
    assert f"There is no restic repository at {repo.name}" in backup.error and "initialise it" in backup.error
