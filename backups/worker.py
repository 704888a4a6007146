"""Backups, worker side: what the worker performs for the backup kinds, and their on_end.

Registered in BackupsConfig.ready() (jobs.kinds): the runner claims the job, calls the
kind's perform and writes the job's end; `backup_on_end` then audits the end and removes
what a failed run left, also when its worker died (the sweep calls it). `backup_write`
is the backup itself without the volume's lock, for a caller that holds it already (a
restore in place taking its safety backup under jobs.runner.job_inline).

Over 450 lines: the backup kind's perform, verify, delete and on_end share the row's recovery fields; the restic and data-path branches already live in restic_io and datapath.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from importlib.metadata import PackageNotFoundError, version

from django.utils import timezone

import tarstream
from accounts.services import audit_record
from backups import datapath, file_index, restic_io
from backups.consistency import containers_stopped
from hosts import refs
from backups.dumps import dumps_take
from backups.hooks import backup_hooks, backup_policy
from backups.models import Backup
from backups.services import backup_delete_check, backup_verify_check, lock_wait_seconds
from backups.storage import StorageError, backup_storage, manifest_key
from jobs.locks import LockHeld, backup_lock, lock_acquire, lock_release, volume_lock
from jobs.models import Job
from jobs.runner import WORKER_ID, JobContext
from project.db import save_fields
from project.errors import CargoholdError, Refused
from project.redact import scrubbed_options
from project.sizes import human_size
from volumes import engine

logger = logging.getLogger(__name__)

FORMAT = "cargohold-backup"
FORMAT_VERSION = 1


def cargohold_version() -> str:
    try:
        return version("cargohold")
    except PackageNotFoundError:
        return "unknown"


def archive_key(name: str, when: datetime, compression: str, storage) -> str:
    """A new archive's key: the volume's folder, its name and the time, never one in use."""
    stamp = when.astimezone(dt_timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    host, engine_name = refs.split_ref(name)
    # Another host's volumes go under "<host>+/": `+` is in no volume name, so no folder of
    # the default host's volumes can be taken for it.
    folder = engine_name if host == refs.default_host_name() else f"{host}+/{engine_name}"
    base = f"{folder}/{engine_name[:200]}-{stamp}"  # a file name has 255 bytes at most
    key = base + tarstream.EXTENSIONS[compression]
    n = 2
    while storage.exists(key) or storage.exists(manifest_key(key)):
        key = f"{base}-{n}{tarstream.EXTENSIONS[compression]}"
        n += 1
    return key


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _read_chunks(storage, key: str):
    with storage.open_reader(key) as f:
        while True:
            chunk = f.read(tarstream.CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


# --- the backup ----------------------------------------------------------------------------


def _engine_facts() -> dict:
    try:
        info = engine.info()
    except engine.EngineError:
        return {}
    return {"id": info.id, "host_name": info.host_name, "server_version": info.server_version}


def build_manifest(*, backup: Backup, ev: engine.EngineVolume, packed: tarstream.PackResult, engine_facts: dict,
                   finished_at: datetime) -> dict:
    """The manifest stored beside an archive (and kept on its row): enough to restore it
    without Cargohold's database."""
    # A CIFS password must not sit beside the archive; a restore asks for what is redacted.
    options, redacted = scrubbed_options(ev.options)
    stats = packed.stats
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cargohold_version": cargohold_version(),
        "uid": backup.uid.hex,
        "volume": {
            "name": ev.name, "driver": ev.driver, "options": options, "options_redacted": redacted,
            "labels": ev.labels, "scope": ev.scope,
        },
        "archive": {
            "key": backup.key,
            "file": backup.file_name,
            "compression": backup.compression,
            "compressed_bytes": packed.compressed_bytes,
            "sha256": packed.sha256,
            # zstd: where each independent frame starts, [tar offset, compressed offset]
            # (backups.partial reads one file without decompressing the rest).
            **({"frames": packed.frames} if packed.frames else {}),
            "layout": "tar, members under data/ (the volume's root); restore with "
                      "`tar -xf <archive> -C /` where the volume is mounted at /data",
        },
        "uncompressed_bytes": stats.tar_bytes,
        "file_count": stats.file_count,
        "content": stats.as_dict(),
        "engine": engine_facts,
        "origin": backup.origin,
        "started_by": backup.started_by,
        "stopped_containers": [c.get("name") for c in backup.stopped_containers],
        "started_at": _iso(backup.started_at),
        "finished_at": _iso(finished_at),
        "verified_at": _iso(finished_at),
    }


def backup_perform(ctx: JobContext) -> dict:
    """Perform a backup job: take the volume's lock (waiting up to
    BACKUP_LOCK_WAIT_SECONDS), then `backup_write` between the volume's hooks
    (backups.hooks: a failing pre-hook aborts, post-hooks always run)."""
    backup = Backup.objects.select_related("volume").get(job=ctx.job)
    with ctx.lock(volume_lock(backup.volume_name), wait_seconds=lock_wait_seconds()):
        with backup_hooks(ctx, backup.volume_name, policy=backup_policy(backup)):
            result = backup_write(ctx, backup)
            if restic_io.is_restic(backup):
                ctx.log("Database dumps are not taken into restic repositories (archives only).")
            else:
                dumps_take(ctx, backup)  # the volume's opted-in database dumps, beside the archive
            return result


def backup_write(ctx: JobContext, backup: Backup) -> dict:
    """Stream the volume through the engine into a verified archive of `backup` (a row
    whose job `ctx` runs). The caller holds the volume's lock; nothing here takes it.

    Checks the volume exists, optionally stops its containers, streams the engine's tar
    unchanged through the compressor into a temporary file (hashing and counting on the
    way), commits it atomically, re-reads it to verify, and writes the manifest last: a
    manifest in storage means a verified archive. On any failure the committed archive is
    removed, and what the engine said about the volume goes on the volume's page; the
    exception propagates (the runner writes the job's end).
    """
    if restic_io.is_restic(backup):  # restic makes a snapshot instead (backups.restic_io)
        return restic_io.restic_backup_write(ctx, backup)
    storage = backup_storage(backup)
    committed = False
    try:
        ctx.say("Checking the volume")
        try:
            ev = engine.inspect_volume(backup.volume_name)
        except engine.NotFound:
            from volumes.services import mirror_sync_quietly

            mirror_sync_quietly()  # the mirror shows it gone at once
            raise Refused(
                f"The volume {backup.volume_name} no longer exists on the engine; nothing was backed up."
            ) from None
        # The work starts now (the wait for the lock is not the backup's duration).
        save_fields(backup, started_at=timezone.now())
        engine_facts = _engine_facts()
        with containers_stopped(ctx, backup) as stopped:
            key = archive_key(backup.volume_name, backup.started_at, backup.compression, storage)
            save_fields(backup, key=key, location=storage.location(key), storage=storage.name)
            began = time.monotonic()
            packed = _stream_to_storage(ctx, backup, storage)
            timings = {"stream_seconds": round(time.monotonic() - began, 3)}
            committed = True
        if stopped:
            from volumes.services import mirror_sync_quietly

            mirror_sync_quietly()
        began = time.monotonic()
        stored_archive_verify(ctx, backup, storage, sha256=packed.sha256, entries=packed.stats.entries,
                              compressed_bytes=packed.compressed_bytes,
                              walked=ctx.result.get("data_path") == datapath.HELPER)
        ctx.done = packed.stats.tar_bytes  # the job shows what was read, not what was re-read
        timings["verify_seconds"] = round(time.monotonic() - began, 3)
        finished = timezone.now()
        manifest = build_manifest(backup=backup, ev=ev, packed=packed, engine_facts=engine_facts,
                                  finished_at=finished)
        file_index.index_export(backup, storage)  # the file index beside the archive, before the manifest
        storage.write_json(manifest_key(backup.key), manifest, token=backup.uid.hex)
        save_fields(
            backup, manifest=manifest, bytes_read=packed.stats.tar_bytes, data_bytes=packed.stats.data_bytes,
            size_bytes=packed.compressed_bytes, file_count=packed.stats.file_count, sha256=packed.sha256,
            verified=True, verified_at=finished, verify_error="",
        )
    except BaseException as exc:
        if committed:
            remove_archive(backup, storage=storage)
        if isinstance(exc, engine.EngineError) and not isinstance(exc, (engine.EngineUnavailable, engine.NotFound)):
            # The engine's word about this volume (an NFS server that does not answer)
            # belongs on the volume's page too.
            from volumes.services import volume_error_record

            volume_error_record(name=backup.volume_name, error=str(exc))
        raise
    from volumes.services import volume_error_clear

    volume_error_clear(name=backup.volume_name)
    result = {
        "backup": backup.pk,
        **timings,
        "message": (
            f"Backed up {backup.file_count} files ({human_size(backup.bytes_read)} of tar) into "
            f"{human_size(backup.size_bytes)}, verified."
        ),
    }
    ctx.result.update(result)
    return result


def _stream_to_storage(ctx: JobContext, backup: Backup, storage) -> tarstream.PackResult:
    """The volume into a committed temporary archive, by the data path backups.datapath
    chooses (named in the job's result as `data_path`)."""
    path, image = datapath.backup_data_path(backup.compression)
    ctx.result["data_path"] = path
    ctx.log(f"Data path: {datapath.PATH_LABELS[path]}")
    with storage.open_temp_writer(backup.key, token=backup.uid.hex) as writer:
        if path == datapath.HELPER:
            # Compressed bytes are all the worker sees: their total is not known ahead.
            ctx.set_total(None)
            ctx.set_progress(0, None, "Streaming the volume through the data helper (compressed bytes so far)")
            packed = datapath.helper_backup_stream(ctx, backup, writer, image=image)
        else:
            ctx.set_progress(0, backup.bytes_expected, "Streaming the volume from the engine")
            packed = datapath.engine_backup_stream(ctx, backup, writer)
        ctx.say("Saving the archive")
        writer.commit()
    save_fields(backup, bytes_read=packed.stats.tar_bytes)
    return packed


def stored_archive_verify(ctx: JobContext, backup: Backup, storage, *, sha256: str, compressed_bytes: int,
                          entries: int, walked: bool = False) -> None:
    """Re-read the archive just stored for `backup`. Raises ArchiveError naming the problem.

    `walked`: the stored bytes themselves were decompressed and walked as they were
    written (the data helper's path): reading them back and finding the SHA-256 and size
    written proves they are those bytes, so decompressing them again would prove nothing
    more. Otherwise (the engine path walked the tar before compression): the SHA-256, a
    complete tar, and as many entries as went in.
    """
    ctx.set_progress(0, compressed_bytes, "Verifying the stored archive")
    if walked:
        try:
            with storage.open_reader(backup.key) as raw:
                reader = tarstream.HashingReader(raw, on_read=ctx.advance_checked)
                reader.drain()
        except tarstream.ArchiveError as exc:
            raise tarstream.ArchiveError(f"Verification failed: {exc}") from None
        if reader.hexdigest() != sha256 or reader.bytes_read != compressed_bytes:
            raise tarstream.ArchiveError(
                f"Verification failed: the stored archive has {reader.bytes_read} bytes with SHA-256 "
                f"{reader.hexdigest()}; {compressed_bytes} bytes with SHA-256 {sha256} were written."
            )
        return
    result = tarstream.verify_stream(
        _read_chunks(storage, backup.key), compression=backup.compression, sha256=sha256,
        on_chunk=ctx.advance_checked,
    )
    if result.ok and result.stats.entries != entries:
        result.ok = False
        result.problems.append(f"The stored archive has {result.stats.entries} entries; {entries} were written.")
    if not result.ok:
        raise tarstream.ArchiveError(result.message)


def remove_archive(backup: Backup, *, storage=None) -> None:
    """Remove a failed backup's archive and manifest from its repository, if they are there.

    The one entry point for "this backup's stored data goes" after a failure: it decides
    by the backup's repository (archives: the objects; a restic snapshot: its branch)."""
    if restic_io.is_restic(backup):
        restic_io.restic_failed_remove(backup)
        return
    if not backup.key:
        return
    try:
        storage = storage or backup_storage(backup)
    except StorageError:
        logger.exception("could not reach the repository of failed backup %s", backup.pk)
        return
    file_index.index_discard(backup)
    for key in (manifest_key(backup.key), file_index.index_key(backup.key), backup.key):
        try:
            storage.delete(key)
        except StorageError:
            logger.exception("could not remove %s of failed backup %s", key, backup.pk)


def archive_delete(backup: Backup) -> None:
    """Delete a backup's stored data from its repository (manifest first, then the
    archive); StorageError when the repository refuses. The single entry point for a
    deletion (the Delete button, retention): it decides by the backup's repository."""
    if restic_io.is_restic(backup):
        restic_io.restic_backup_remove(backup)  # restic forget by id; prune frees the data
        return
    if backup.key:
        storage = backup_storage(backup)
        storage.delete(manifest_key(backup.key))
        storage.delete(file_index.index_key(backup.key))
        storage.delete(backup.key)


def backup_ended_cleanup(job: Job) -> Backup | None:
    """What every kind that writes a Backup does once its job ended: if it did not
    succeed, nothing of it stays in storage and no helper container of it stays behind
    (a worker killed mid-stream reached neither its `except` nor its `finally`).
    Returns the job's backup (None if it was deleted meanwhile)."""
    backup = Backup.objects.filter(job=job).first()
    if backup is None or job.status == Job.Status.SUCCEEDED:
        return backup
    if backup.key or restic_io.is_restic(backup):
        remove_archive(backup)
    if job.started_at is not None:
        try:
            engine.remove_job_helpers(job_id=job.pk)
        except engine.EngineError:
            logger.warning("could not remove the helper containers of job %s", job.pk)
    return backup


def backup_on_end(job: Job) -> None:
    """on_end of a backup job (its own, or a safety backup's child job): clean up after a
    failure, audit the end."""
    backup = backup_ended_cleanup(job)
    if backup is None:
        return
    ok = job.status == Job.Status.SUCCEEDED
    if not ok:  # the log record is scrubbed like the job's error (project.redact)
        logger.warning("backup %s of %s failed: %s", backup.pk, backup.volume_name, job.error)
    audit_record(
        action="backup_finish",
        actor=job.created_by,
        object_type="volume",
        object_name=backup.volume_name,
        params={"backup": backup.pk, "status": job.status, "size_bytes": backup.size_bytes,
                "sha256": backup.sha256, "location": backup.location,
                # What really happened: the request, and who was stopped (a container's label stops it anyway).
                "stop_containers": backup.stop_containers,
                "stopped_containers": [c.get("name") for c in backup.stopped_containers]},
        result="ok" if ok else "error",
        error="" if ok else job.error,
    )


# --- verifying -----------------------------------------------------------------------------


def backup_verify(*, backup: Backup, actor=None, on_chunk=None) -> tarstream.VerifyResult:
    """Re-read a stored archive: SHA-256 as recorded, decompresses to a complete tar.

    Records the outcome on the row (verified / verify_error) and in the audit trail.
    Corruption is reported, never passed: a failed check leaves `verified` False.
    """
    backup_verify_check(backup)
    try:
        storage = backup_storage(backup)
        result = tarstream.verify_stream(
            _read_chunks(storage, backup.key), compression=backup.compression,
            sha256=backup.sha256 or None, on_chunk=on_chunk,
        )
    except StorageError as exc:
        result = tarstream.VerifyResult(ok=False, sha256="", compressed_bytes=0, problems=[str(exc)])
    if result.ok and backup.file_count is not None and result.stats.file_count != backup.file_count:
        result.ok = False
        result.problems.append(f"It holds {result.stats.file_count} files; {backup.file_count} were recorded.")
    now = timezone.now()
    fields = {"verified": result.ok, "verified_at": now, "verify_error": "" if result.ok else result.message}
    if not backup.sha256 and result.ok:
        fields["sha256"] = result.sha256
    if result.problems and "missing from storage" in " ".join(result.problems):
        fields["missing"] = True
    elif result.compressed_bytes:
        fields["missing"] = False
    Backup.objects.filter(pk=backup.pk).update(**fields)
    for name, value in fields.items():
        setattr(backup, name, value)
    audit_record(
        action="backup_verify", actor=actor, object_type="backup", object_name=str(backup.pk),
        params={"volume": backup.volume_name, "sha256": result.sha256},
        result="ok" if result.ok else "error", error="" if result.ok else result.message,
    )
    return result


def backup_verify_perform(ctx: JobContext) -> dict:
    """Perform a verification job (the Verify button): holds the backup's lock while reading."""
    backup = Backup.objects.filter(pk=ctx.job.params.get("backup")).first()
    if backup is None:
        raise Refused("That backup no longer exists.")
    if restic_io.is_restic(backup):  # restic check of its repository (backups.restic_io)
        with ctx.lock(backup_lock(backup.pk), wait_seconds=30):
            return {"message": restic_io.restic_backup_verify(ctx, backup), "backup": backup.pk}
    with ctx.lock(backup_lock(backup.pk), wait_seconds=30):
        ctx.set_progress(0, backup.size_bytes, "Verifying the stored archive")
        result = backup_verify(backup=backup, actor=ctx.job.created_by, on_chunk=ctx.advance_checked)
    if not result.ok:
        raise CargoholdError(result.message)
    return {"message": result.message, "backup": backup.pk}


# --- deleting ------------------------------------------------------------------------------


def backup_delete(*, backup: Backup, user=None, request=None) -> None:
    """Remove a backup's archive and manifest from storage, then its row (audited).

    Worker side (the web process has the backup folder read-only in the Compose
    deployment): pages call `backup_delete_start`; retention calls this. Refused while the
    backup runs or while something reads it (verify, restore: they hold its lock, which
    this takes too). The manifest goes first: a crash in between leaves an archive without
    a manifest (reported by rescan_backups), never a manifest promising an archive that
    is gone.
    """
    backup_delete_check(backup)
    resource, owner = backup_lock(backup.pk), f"deletion of backup {backup.pk} on {WORKER_ID}"
    try:
        lock_acquire(resource=resource, owner=owner, ttl=timedelta(minutes=10))
    except LockHeld as exc:
        raise Refused(f"Backup #{backup.pk} is in use: {exc.lock.owner}.") from None
    try:
        params = {"backup": backup.pk, "volume": backup.volume_name, "location": backup.location,
                  "sha256": backup.sha256, "status": backup.status}
        try:
            archive_delete(backup)
        except StorageError as exc:
            audit_record(action="backup_delete", actor=user, request=request, object_type="backup",
                         object_name=str(backup.pk), params=params, result="error", error=str(exc))
            raise
        backup.delete()
        audit_record(action="backup_delete", actor=user, request=request, object_type="backup",
                     object_name=params["backup"], params=params)
    finally:
        lock_release(resource=resource, owner=owner)


def backup_delete_perform(ctx: JobContext) -> dict:
    """Perform a deletion job (the Delete button)."""
    backup_id = ctx.job.params.get("backup")
    backup = Backup.objects.filter(pk=backup_id).first()
    if backup is None:
        return {"message": f"Backup #{backup_id} was already deleted."}
    ctx.say("Deleting the archive and its manifest")
    backup_delete(backup=backup, user=ctx.job.created_by)
    return {"message": f"Deleted backup #{backup_id} of {backup.volume_name}."}
