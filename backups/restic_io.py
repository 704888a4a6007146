"""A backup into a restic repository, worker side: the restic branch of
backups.worker.backup_write (the archive path stays as it is).

restic reads the volume in the data helper (repositories.restic: read-only mount, the
repository's folder or the S3 network beside it) and makes one snapshot tagged with the
volume, the backup's uid and the job. The row records the snapshot id, the files and
bytes restic read, and what it added to the repository (`size_bytes`: after
deduplication and compression, what this backup cost). Then the file index is built
from `restic ls`. A failure after the snapshot was made forgets it again: a snapshot
whose backup is not listed as succeeded does not stay.
"""

from __future__ import annotations

import logging
import time

from django.utils import timezone

from backups.consistency import containers_stopped
from backups.models import Backup
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import Refused
from project.sizes import human_size
from volumes import engine

logger = logging.getLogger(__name__)

DATA_PATH = "restic"
FORMAT = "cargohold-restic-backup"


def is_restic(backup: Backup) -> bool:
    return bool(backup.repository_id) and backup.repository.is_restic


def restic_backup_write(ctx: JobContext, backup: Backup) -> dict:
    """`backup_write` for a restic repository; the caller holds the volume's lock and
    runs the hooks around it."""
    from repositories import restic

    repository = backup.repository
    ctx.say("Checking the volume")
    try:
        ev = engine.inspect_volume(backup.volume_name)
    except engine.NotFound:
        from volumes.services import mirror_sync_quietly

        mirror_sync_quietly()
        raise Refused(
            f"The volume {backup.volume_name} no longer exists on the engine; nothing was backed up."
        ) from None
    save_fields(backup, started_at=timezone.now(), storage=DATA_PATH)
    ctx.result["data_path"] = DATA_PATH
    ctx.log(f"Data path: restic in the data helper, into {restic.repository_label(repository)}")
    with containers_stopped(ctx, backup) as stopped:
        ctx.set_progress(0, backup.bytes_expected, "restic: reading the volume")
        began = time.monotonic()
        summary = restic.restic_backup(ctx, backup)
        timings = {"backup_seconds": round(time.monotonic() - began, 3), "restic_seconds": summary["duration"]}
    # One `restic ls` gives the snapshot's full id and, when the file index is there, its entries.
    ctx.say("Building the file index" if _indexer() else "Looking up the snapshot")
    began = time.monotonic()
    snapshot, entries = restic.restic_snapshot_ls(repository, summary["snapshot_id"], entries=bool(_indexer()))
    timings["ls_seconds"] = round(time.monotonic() - began, 3)
    if snapshot is None:
        raise restic.ResticError(f"restic made snapshot {summary['snapshot_id']} but cannot list it.")
    snapshot_id = snapshot["id"]
    if stopped:
        from volumes.services import mirror_sync_quietly

        mirror_sync_quietly()
    location = f"{repository.location.url()} snapshot {snapshot_id[:8]}"
    finished = timezone.now()
    manifest = {
        "format": FORMAT,
        "format_version": 1,
        "uid": backup.uid.hex,
        "repository": {"name": repository.name, "url": repository.location.url(), "format": "restic"},
        "snapshot": {"id": snapshot_id, "host": restic.engine_host(), "paths": [restic.MOUNT],
                     "tags": restic.backup_tags(volume_name=backup.volume_name, backup_uid=backup.uid.hex,
                                                job_id=ctx.job.pk),
                     "restore": f"restic -r <repository> restore {snapshot_id[:8]} --target / "
                                "(with the volume mounted at /data)"},
        "volume": {"name": ev.name, "driver": ev.driver, "labels": ev.labels, "scope": ev.scope},
        "restic": {"version": summary["version"], "files_new": summary["files_new"],
                   "files_changed": summary["files_changed"], "files_unmodified": summary["files_unmodified"],
                   "data_added": summary["data_added"], "bytes_processed": summary["bytes_processed"]},
        "file_count": summary["files"],
        "started_at": backup.started_at.isoformat(),
        "finished_at": finished.isoformat(),
    }
    save_fields(backup, snapshot_id=snapshot_id, key="", location=location, manifest=manifest,
                file_count=summary["files"], data_bytes=summary["bytes_processed"],
                bytes_read=summary["bytes_processed"], size_bytes=summary["data_added"],
                # restic checked what it wrote (its pack hashes); `restic check` is the verify.
                verified=False, verify_error="")
    ctx.done = summary["bytes_processed"]
    if summary["warnings"]:
        ctx.result["warnings"] = "; ".join(summary["warnings"])[:1000]
    indexer = _indexer()
    indexed = indexer(backup, iter(entries)) if indexer else None
    # A failure leaves no snapshot: the job's on_end (backup_ended_cleanup -> remove_archive)
    # forgets any snapshot tagged with this backup's uid, also after a worker died here.
    from volumes.services import volume_error_clear

    volume_error_clear(name=backup.volume_name)
    result = {
        "backup": backup.pk,
        "snapshot_id": snapshot_id,
        "indexed": indexed,
        **timings,
        "message": (
            f"Backed up {backup.file_count} files ({human_size(backup.data_bytes or 0)}) with restic as snapshot "
            f"{snapshot_id[:8]}; {human_size(backup.size_bytes or 0)} added to {repository.name}."
        ),
    }
    ctx.result.update(result)
    return result


def _indexer():
    """backups.file_index.index_replace, once the file index is there (else None)."""
    try:
        from backups import file_index
    except ImportError:
        return None
    return getattr(file_index, "index_replace", None)


def restic_backup_remove(backup: Backup) -> None:
    """Forget a restic backup's snapshot (deletion, retention, a failed run's leftovers);
    restic's errors propagate (ResticError). Its data goes at the next prune."""
    from repositories import restic

    if backup.snapshot_id:
        restic.restic_forget(backup.repository, [backup.snapshot_id])


def restic_backup_verify(ctx: JobContext, backup: Backup) -> str:
    """Verify of a restic backup: `restic check` of its repository with the repository's
    read subset (RESTIC_VERIFY_READ_SUBSET by default); recorded on the row."""
    from django.conf import settings

    from repositories import restic

    subset = backup.repository.verify_read_subset or settings.RESTIC_VERIFY_READ_SUBSET
    ctx.say(f"restic check of {backup.repository.name}, reading {subset} of the data")
    try:
        text = restic.restic_verify(ctx, backup.repository, subset)
    except restic.ResticError as exc:
        save_fields(backup, verified=False, verified_at=timezone.now(), verify_error=str(exc)[:2000])
        raise
    save_fields(backup, verified=True, verified_at=timezone.now(), verify_error="")
    return text


def restic_failed_remove(backup: Backup) -> None:
    """After a failed or killed restic backup: forget every snapshot tagged with its uid
    (a worker that died after restic finished never recorded the id). Quiet: logged."""
    from repositories import restic

    try:
        ids = [s["id"] for s in restic.restic_snapshots(backup.repository, tag=f"backup:{backup.uid.hex}")]
        if backup.snapshot_id and backup.snapshot_id not in ids:
            ids.append(backup.snapshot_id)
        if ids:
            restic.restic_forget(backup.repository, ids)
    except restic.ResticError as exc:
        logger.warning("could not forget the snapshots of failed restic backup %s: %s", backup.pk, exc)
    except Exception:
        logger.exception("could not forget the snapshots of failed restic backup %s", backup.pk)
