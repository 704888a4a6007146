"""Backups into a restic repository: real engine, real restic in the data helper."""

import pytest

from tests.repositories.restic_fixtures import backup_now, host_snapshots

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_backup_makes_a_tagged_snapshot(no_enqueue, restic_repo, volume_with_files):
    repo = restic_repo()
    name = volume_with_files()
    backup = backup_now(name, repo)
    assert backup.status == "succeeded", backup.error
    snaps = host_snapshots(repo)
    assert len(snaps) == 1
    snap = snaps[0]
    assert backup.snapshot_id == snap["id"]
    assert {"cargohold", f"volume:{name}", f"backup:{backup.uid.hex}", f"job:{backup.job_id}"} <= set(snap["tags"])
    assert snap["paths"] == ["/data"]
    assert backup.file_count >= 3 and backup.data_bytes >= 300000 and backup.size_bytes > 0
    assert backup.is_restorable
    assert backup.job.result["data_path"] == "restic"


def test_the_backup_builds_the_file_index_from_restic_ls_and_remembers_the_version(
        no_enqueue, restic_repo, volume_with_files):
    from backups.models import BackupEntry

    repo = restic_repo()
    repo.refresh_from_db()
    assert repo.status_text.startswith("restic 0.") and repo.checked_at is not None
    backup = backup_now(volume_with_files(), repo)
    assert backup.status == "succeeded", backup.error
    entries = {e.path: e for e in BackupEntry.objects.filter(backup=backup)}
    assert backup.job.result["indexed"] == len(entries) >= 6
    hello, link, sub = entries["dir/hello.txt"], entries["dir/link"], entries["dir/sub"]
    assert (hello.kind, hello.size, hello.parent, hello.name) == ("f", 6, "dir", "hello.txt")
    assert (link.kind, link.link) == ("l", "hello.txt")
    assert (sub.kind, sub.uid, sub.gid) == ("d", 1234, 4321) and sub.mode & 0o170000 == 0o040000
    assert entries["dir"].mode & 0o777 == 0o751
    assert entries["dir/sub/random.bin"].size == 300000 and entries["dir/sub/random.bin"].mtime > 0
    assert backup.job.progress_done == backup.data_bytes  # restic's bytes read, on the job
