"""Fixtures for backup tests: run the real handler in this process, against the real engine."""

import pytest

from tests import dockercli


@pytest.fixture
def no_enqueue(monkeypatch):
    """Jobs are created but not sent to Redis: the test runs the handler itself.

    (A session worker started by another test would otherwise race us for the job.)
    """
    from backups import tasks

    monkeypatch.setattr(tasks.backup_volume, "delay", lambda *args, **kwargs: None)
    monkeypatch.setattr(tasks.verify_backup, "delay", lambda *args, **kwargs: None)
    monkeypatch.setattr(tasks.delete_backup, "delay", lambda *args, **kwargs: None)


@pytest.fixture
def backup_root(settings, tmp_path):
    """A fresh, empty BACKUP_ROOT for this test."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


@pytest.fixture
def volume_with_files():
    """A volume with a few files of different kinds, known to the mirror."""
    from volumes.services import mirror_sync

    def make(script: str | None = None, **kwargs) -> str:
        name = dockercli.create_volume(**kwargs)
        dockercli.fill_volume(name, script or (
            "mkdir -p /data/dir/sub && echo hello > /data/dir/hello.txt && "
            "head -c 300000 /dev/urandom > /data/dir/sub/random.bin && "
            "ln -s hello.txt /data/dir/link && ln /data/dir/hello.txt /data/dir/hard && "
            "chown -R 1234:4321 /data/dir/sub && chmod 0751 /data/dir"
        ))
        mirror_sync()
        return name

    return make


def run_backup(backup):
    """Run a queued backup's job with the real runner and handler, in this process."""
    from backups import services
    from jobs.runner import run_job

    run_job(backup.job_id, services.backup_run)
    services.backup_sync_with_job(job_id=backup.job_id)
    backup.refresh_from_db()
    backup.job.refresh_from_db()
    return backup
