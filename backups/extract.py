"""One file or folder of a restic backup, prepared for download by a worker (the web tier
never runs restic): the job kind `backup_extract`. Its perform has `restic_dump` write
the member (a folder: as a tar) into DOWNLOAD_DIR/<token>, the page polls the job, then
serves the file; files older than an hour are removed by the sweep (`downloads_clean`,
registered with jobs.recovery)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from accounts.services import audit_record
from backups.models import Backup, BackupEntry
from jobs.locks import backup_lock
from jobs.models import Job
from jobs.runner import JobContext
from jobs.services import job_create
from project.errors import Refused

KIND_EXTRACT = "backup_extract"
KEEP_SECONDS = 3600
TIME_LIMIT_SECONDS = 6 * 3600
PARTIAL_SUFFIX = ".partial"


def download_dir() -> Path:
    return Path(settings.VAR_DIR) / "downloads"


def extract_start(*, backup: Backup, entry: BackupEntry, user=None) -> Job:
    """Queue the extraction of `entry` from restic backup `backup` (audited). The file's
    name in the download folder is a random token kept in the job's params."""
    if not backup.snapshot_id:
        raise Refused(f"Backup #{backup.pk} is no restic snapshot: its files download directly.")
    if backup.status != Backup.Status.SUCCEEDED or backup.missing:
        raise Refused(f"Backup #{backup.pk} has no snapshot to read ({backup.status}).")
    with transaction.atomic():
        job = job_create(kind=KIND_EXTRACT, target=str(backup.pk), target_type="backup", user=user,
                         params={"backup": backup.pk, "path": entry.path, "kind": entry.kind,
                                 "token": secrets.token_hex(16)},
                         progress_total=entry.size if entry.kind == BackupEntry.Kind.FILE else None)
    audit_record(action="backup_extract_start", actor=user, object_type="backup", object_name=str(backup.pk),
                 params={"volume": backup.volume_name, "path": entry.path, "kind": entry.kind, "job": job.pk})
    return job


def extract_file(job: Job) -> Path | None:
    """The prepared file of a succeeded extraction, while it is kept."""
    token = str((job.params or {}).get("token", ""))
    if job.kind != KIND_EXTRACT or job.status != Job.Status.SUCCEEDED or not token.isalnum():
        return None
    path = download_dir() / token
    return path if path.is_file() else None


class _Counting:
    """Writes to a file, counting for the job's progress (and its cancel)."""

    def __init__(self, f, ctx: JobContext):
        self.f, self.ctx = f, ctx

    def write(self, data) -> int:
        n = self.f.write(data)
        self.ctx.advance_checked(len(data))
        return n


def extract_perform(ctx: JobContext) -> dict:
    """Worker side: dump the member from the snapshot into the download folder, under a
    temporary name until it is complete."""
    from repositories.restic import restic_dump

    params = ctx.job.params
    backup = Backup.objects.select_related("repository").filter(pk=params.get("backup")).first()
    if backup is None or backup.repository is None or not backup.snapshot_id:
        raise Refused("That backup is gone, or no restic snapshot.")
    folder = download_dir()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / params["token"]
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    ctx.say(f"Reading {params['path']} from snapshot {backup.snapshot_id[:8]}")
    with ctx.lock(backup_lock(backup.pk), wait_seconds=30):
        try:
            with open(partial, "wb") as f:
                restic_dump(backup.repository, backup.snapshot_id, params["path"], _Counting(f, ctx))
                f.flush()
                os.fsync(f.fileno())
            partial.rename(final)
        finally:
            partial.unlink(missing_ok=True)
    return {"backup": backup.pk, "path": params["path"], "size_bytes": final.stat().st_size}


def extract_on_end(job: Job) -> None:
    if job.status != Job.Status.SUCCEEDED:
        token = str((job.params or {}).get("token", ""))
        if token.isalnum():
            (download_dir() / token).unlink(missing_ok=True)


def downloads_clean(*, older_than_seconds: int = KEEP_SECONDS) -> list[str]:
    """Remove prepared downloads (and leftovers of dead extractions) older than an hour."""
    removed: list[str] = []
    folder = download_dir()
    if not folder.is_dir():
        return removed
    active = {str(t) for t in Job.objects.filter(kind=KIND_EXTRACT, status__in=Job.ACTIVE)
              .values_list("params__token", flat=True)}
    now = time.time()
    for path in folder.iterdir():
        if path.name.removesuffix(PARTIAL_SUFFIX) in active or not path.is_file():
            continue
        try:
            if now - path.stat().st_mtime > older_than_seconds:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            continue
    return removed

