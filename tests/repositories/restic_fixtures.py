"""Shared by the restic tests: a local restic repository under the test's folder, a
backup into it run by the real runner in this process, and a look into the repository
with the host's own restic (plain restic, as a person without Cargohold would)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

PASSWORD = "Tr0ub4dor-restic-pw-9431"  # the tests look for it where it must not be


@pytest.fixture
def no_enqueue(monkeypatch):
    """Jobs are created but not sent to Redis: the test runs the handler itself."""
    from jobs import tasks

    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *args, **kwargs: None)


@pytest.fixture
def restic_repo(db, tmp_path):
    """make(name, password=..., init=True) -> an initialised local restic Repository."""
    from repositories import restic
    from repositories.models import Repository

    def make(name: str = "rr", *, password: str = PASSWORD, init: bool = True, path=None) -> Repository:
        repo = Repository(name=name, format=Repository.Format.RESTIC, url=str(path or (tmp_path / f"restic-{name}")))
        repo.set_secrets(password=password)
        repo.save()
        if init:
            restic.restic_init(repo)
        return repo

    return make


def start_backup(volume_name: str, repo, **kwargs):
    from backups.models import Backup
    from backups.services import backup_start

    backup = backup_start(volume_name=volume_name, **kwargs)
    Backup.objects.filter(pk=backup.pk).update(repository=repo)
    backup.refresh_from_db()
    return backup


def run_job(job_id: int) -> None:
    from jobs.runner import job_perform

    job_perform(job_id)


def backup_now(volume_name: str, repo, **kwargs):
    backup = start_backup(volume_name, repo, **kwargs)
    run_job(backup.job_id)
    backup.refresh_from_db()
    return backup


def host_restic(repo, *args: str, password: str = PASSWORD, check: bool = True) -> subprocess.CompletedProcess:
    """The host's restic on the repository's folder (what a person would run)."""
    env = {**os.environ, "RESTIC_PASSWORD": password}
    return subprocess.run(["restic", "-r", repo.location.path, "--no-cache", *args], env=env, capture_output=True,
                          check=check, timeout=300)


def host_snapshots(repo) -> list[dict]:
    out = host_restic(repo, "snapshots", "--json", "--no-lock").stdout
    return json.loads(out or b"[]")
