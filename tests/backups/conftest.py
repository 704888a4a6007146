"""Fixtures for backup tests: run the real handler in this process, against the real engine."""

import pytest

from tests import dockercli


@pytest.fixture
def no_enqueue(monkeypatch):
    """Jobs are created but not sent to Redis: the test runs the handler itself.

    (A session worker started by another test would otherwise race us for the job.)
    """
    from jobs import tasks

    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *args, **kwargs: None)


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
    """Perform a queued backup's job with the real runner and its kind, in this process."""
    from jobs.runner import job_perform

    job_perform(backup.job_id)
    backup.refresh_from_db()
    return backup


JOB_STATE = ("status", "error", "created_by", "trigger", "started_at", "finished_at")


def backup_row(**fields):
    """A Backup row (no archive made) whose job holds the given state: `status`, `error`,
    `created_by`, `trigger`, `finished_at` go to the job (ended jobs count as handled);
    the rest to the backup."""
    from backups.models import Backup
    from jobs.models import Job

    state = {name: fields.pop(name) for name in JOB_STATE if name in fields and name != "started_at"}
    state.setdefault("status", Job.Status.QUEUED)
    job = Job.objects.create(kind="backup", target=fields.get("volume_name", ""),
                             end_handled=state["status"] not in Job.ACTIVE, **state)
    return Backup.objects.create(job=job, **fields)
