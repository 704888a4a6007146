"""Restore drills, worker side: perform one, end it, clean up after a dead worker.

The order: check the whole archive (restores.archive_io, as a restore does: checksum,
every member), create a scratch volume (named on the drill row first, so a crash still
knows it), write the archive into it, read it back and compare with the manifest (file
count, data bytes), run the policy's probe in a throw-away helper container with the
scratch volume at /data, check and load its database dumps in scratch servers
(drills.probes), and always remove the scratch volume. A failure is notified.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings

from backups.services import lock_wait_seconds
from backups.storage import StorageError, backup_storage
from drills.models import Drill
from hosts import refs
from drills.probes import dumps_probe
from drills.services import SCRATCH_LABEL, SCRATCH_PREFIX
from jobs.locks import backup_lock
from jobs.models import Job
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import CargoholdError, Refused
from restores import archive_io
from tarstream import ArchiveError, ArchiveTooLarge, TarWalker, UnsafeArchive
from volumes import engine

logger = logging.getLogger(__name__)


class DrillFailed(CargoholdError):
    pass


def _check(ctx: JobContext, drill: Drill, name: str, ok: bool, detail: str) -> None:
    drill.checks = [*drill.checks, {"check": name, "ok": ok, "detail": detail}]
    save_fields(drill, checks=drill.checks)
    ctx.log(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        raise DrillFailed(f"Restore drill failed at {name}: {detail}")


def read_back(volume_name: str, *, job_id: int, on_bytes=None):
    """The stats of the volume's content as the engine's tar of it shows them."""
    walker = TarWalker()
    with engine.helper_container(volume_name, read_only=True, purpose="drill-read", job_id=job_id) as cid:
        for chunk in engine.archive_stream(cid):
            walker.feed(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    walker.close()
    return walker.stats


def compare(ctx: JobContext, drill: Drill, backup, stats) -> None:
    """What came back against what the manifest recorded (counts and sizes)."""
    content = (backup.manifest or {}).get("content") or {}
    recorded_files = backup.file_count if backup.file_count is not None else (backup.manifest or {}).get("file_count")
    if recorded_files is not None:
        _check(ctx, drill, "file count", stats.file_count == recorded_files,
               f"{stats.file_count} restored, {recorded_files} recorded")
    recorded_bytes = content.get("data_bytes", backup.data_bytes)
    if recorded_bytes is not None:
        # An archive made by the data helper's GNU tar (--sparse) records a sparse file by
        # its stored extents; the engine reads it back whole: then only a shortfall is a loss.
        sparse = (backup.job.result or {}).get("data_path") == "helper"
        ok = stats.data_bytes >= recorded_bytes if sparse else stats.data_bytes == recorded_bytes
        _check(ctx, drill, "data bytes", ok, f"{stats.data_bytes} restored, {recorded_bytes} recorded"
               + (" (sparse files count whole when read back)" if sparse and ok else ""))
    for kind in ("files", "symlinks", "hardlinks", "others"):
        if kind in content:
            _check(ctx, drill, kind, getattr(stats, kind) == content[kind],
                   f"{getattr(stats, kind)} restored, {content[kind]} recorded")


def probe(ctx: JobContext, drill: Drill, command: str) -> None:
    ctx.say("Running the probe")
    ctx.log(f"$ sh -c {command!r}   # probe, scratch volume at /data")
    try:
        out = engine.run_helper(drill.scratch_volume, ["sh", "-c", command], read_only=True, purpose="drill-probe",
                                job_id=ctx.job.pk, timeout=settings.DRILL_PROBE_TIMEOUT_SECONDS)
    except engine.EngineError as exc:
        _check(ctx, drill, "probe", False, str(exc))
        return
    for line in out.splitlines()[-50:]:
        ctx.log(f"  {line}")
    _check(ctx, drill, "probe", True, "exit 0")


def drill_perform(ctx: JobContext) -> dict:
    drill = Drill.objects.select_related("backup", "policy").get(job=ctx.job)
    backup = drill.backup
    if backup is None or not backup.is_restorable:
        raise Refused(f"Backup #{drill.backup_ref} can no longer be restored; nothing was drilled.")
    storage = backup_storage(backup)
    with ctx.lock(backup_lock(backup.pk), wait_seconds=lock_wait_seconds()):
        ctx.set_progress(0, backup.size_bytes, "Checking the archive: checksum and every member")
        try:
            sha = archive_io.recorded_checksum(backup, storage)
            result = archive_io.check_archive(
                key=backup.key, compression=backup.compression, sha256=sha, allow_devices=False,
                file_count=backup.file_count, storage=storage, on_bytes=ctx.advance_checked,
                limit=archive_io.recorded_expansion(backup))
        except (ArchiveError, UnsafeArchive, ArchiveTooLarge, StorageError) as exc:
            _check(ctx, drill, "archive", False, str(exc))
        _check(ctx, drill, "archive", True, f"checksum as recorded, {result.stats.entries} members")
        name = refs.from_engine(f"{SCRATCH_PREFIX}{drill.pk}-{uuid.uuid4().hex[:8]}")  # on this host
        save_fields(drill, scratch_volume=name)  # before it exists: a crash still knows it
        ctx.say(f"Restoring into the scratch volume {name}")
        engine.create_volume(name=name, driver="local", options={},
                             labels={SCRATCH_LABEL: str(drill.pk), engine.INSTALL_LABEL: settings.INSTALL_ID})
        try:
            ctx.set_progress(0, result.stats.tar_bytes, f"Writing {result.stats.file_count} files into {name}")
            archive_io.write_archive(volume_name=name, key=backup.key, compression=backup.compression,
                                     layout=result.layout, allow_devices=False, sha256=sha, job_id=ctx.job.pk,
                                     storage=storage, on_bytes=ctx.advance, check_cancelled=ctx.check_cancelled)
            ctx.set_progress(0, result.stats.tar_bytes, "Reading the restored volume back")
            compare(ctx, drill, backup, read_back(name, job_id=ctx.job.pk, on_bytes=ctx.advance_checked))
            command = (drill.policy.drill_probe if drill.policy else "").strip()
            if command:
                probe(ctx, drill, command)
            dumps_probe(ctx, backup, lambda name, ok, detail: _check(ctx, drill, name, ok, detail))
        finally:
            scratch_remove(drill)
    passed = len(drill.checks)
    return {"drill": drill.pk, "message": f"Backup #{backup.pk} restores: {passed} checks passed."}


def scratch_remove(drill: Drill, *, job_id: int | None = None) -> bool:
    """Remove the drill's scratch volume (and, after a dead worker, its helpers first)."""
    if not drill.scratch_volume:
        return True
    try:
        if job_id is not None:
            engine.remove_job_helpers(job_id=job_id)
        try:
            engine.remove_volume(drill.scratch_volume)
        except engine.NotFound:
            pass
    except engine.EngineError as exc:
        logger.warning("could not remove the scratch volume %s of drill %s: %s", drill.scratch_volume, drill.pk, exc)
        return False
    save_fields(drill, scratch_volume="")
    return True


def drill_on_end(job: Job) -> None:
    """Once, after a drill's job ended: remove what a dead worker left; notify a failure."""
    drill = Drill.objects.filter(job=job).first()
    if drill is None:
        return
    scratch_remove(drill, job_id=job.pk)
    if job.status == Job.Status.FAILED:
        from policies.models import Notification
        from policies.notify import notify

        notify(event=Notification.Event.RUN_FAILED,
               subject=f"Restore drill of {drill.volume_name} failed",
               text=f"Restore drill #{drill.pk} of backup #{drill.backup_ref} of {drill.volume_name} failed: "
                    f"{job.error}",
               payload={"drill": drill.pk, "volume": drill.volume_name, "backup": drill.backup_ref,
                        "error": job.error})


def drills_recover() -> None:
    """At worker start and every minute: scratch volumes of drills that ended (a dead
    worker's, an engine that refused the removal) are removed."""
    for drill in Drill.objects.exclude(scratch_volume="").exclude(status__in=Job.ACTIVE):
        if not refs.is_here(drill.scratch_volume):
            continue
        scratch_remove(drill, job_id=drill.job_id)
