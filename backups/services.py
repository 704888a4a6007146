"""Backups: start, run (worker side), verify, delete, rebuild the catalogue, recover.

The web process calls `backup_start`, `backups_start_many`, `backup_verify_start`,
`backup_delete`; the worker runs `backup_run` / `backup_verify_run` (job handlers) and
`backups_recover` (registered with jobs.recovery). Only worker-side functions call the
engine.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone as dt_timezone
from importlib.metadata import PackageNotFoundError, version

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
import tarstream
from backups.models import Backup
from backups.storage import MANIFEST_SUFFIX, StorageError, get_storage, manifest_key
from jobs.models import Job
from project.db import save_fields as _mark
from jobs.runner import JobCancelled, JobContext
from jobs.services import LockHeld, job_create, job_outcome_adopt, lock_acquire, lock_holder, lock_release
from project.errors import CargoholdError, Refused
from project.redact import scrubbed_options, scrubbed_text
from volumes import engine
from volumes.models import Volume

logger = logging.getLogger(__name__)

KIND_BACKUP = "backup"
KIND_VERIFY = "backup_verify"
KIND_DELETE = "backup_delete"
STOP_LABEL = "cargohold.stop-during-backup"  # on a volume: default; on a container: always
FORMAT = "cargohold-backup"
FORMAT_VERSION = 1


def lock_wait_seconds() -> float:
    """How long an operation on a volume waits for another one to finish before it is refused."""
    return float(settings.BACKUP_LOCK_WAIT_SECONDS)


def volume_lock(name: str) -> str:
    """The lock every operation on a volume's data takes (backup, restore, remove)."""
    return f"volume:{name}"


def backup_lock(backup_id: int) -> str:
    """Held while an archive is read (verify, restore), so it is not deleted meanwhile."""
    return f"backup:{backup_id}"


def cargohold_version() -> str:
    try:
        return version("cargohold")
    except PackageNotFoundError:
        return "unknown"


def stops_by_default(volume: Volume | None) -> bool:
    """The per-volume default of the consistency option (the volume's label)."""
    return bool(volume) and str(volume.labels.get(STOP_LABEL, "")).lower() == "true"


# --- starting ------------------------------------------------------------------------


def backup_start(
    *,
    volume_name: str,
    user=None,
    trigger: str = "user",
    origin: str = Backup.Origin.MANUAL,
    stop_containers: bool | None = None,
    compression: str = Backup.Compression.ZSTD,
    queue: str | None = None,
    request=None,
) -> Backup:
    """Queue a backup of a volume known to the mirror: a Backup row and its job.

    `stop_containers=None` takes the volume's default (its `cargohold.stop-during-backup`
    label). The task is enqueued when the transaction commits, with only the job's id
    (on `queue` when given, else the default queue).
    """
    if compression not in tarstream.COMPRESSIONS:
        raise Refused(f"Unknown compression {compression!r}: choose zstd or gzip.")
    if origin not in Backup.Origin.values:
        raise Refused(f"Unknown origin {origin!r}.")
    volume = Volume.objects.filter(name=volume_name).first()
    if volume is None:
        raise Refused(f"No volume named {volume_name!r} is known. Is the inventory up to date?")
    if volume.is_gone:
        raise Refused(f"The volume {volume_name} is no longer on the engine; there is nothing to back up.")
    if stop_containers is None:
        stop_containers = stops_by_default(volume)
    from backups import tasks  # tasks import this module

    with transaction.atomic():
        job = job_create(
            kind=KIND_BACKUP,
            task=tasks.backup_volume,
            target=volume.name,
            params={"stop_containers": stop_containers, "compression": compression, "origin": origin},
            user=user,
            trigger=trigger,
            progress_total=volume.size_bytes,
            queue=queue,
        )
        backup = Backup.objects.create(
            job=job,
            volume=volume,
            volume_name=volume.name,
            origin=origin,
            compression=compression,
            stop_containers=stop_containers,
            bytes_expected=volume.size_bytes,
            created_by=job.created_by,
            trigger=trigger,
        )
        audit_record(
            action="backup_start",
            actor=user,
            request=request,
            object_type="volume",
            object_name=volume.name,
            params={"backup": backup.pk, "job": job.pk, "compression": compression,
                    "stop_containers": stop_containers, "origin": origin, "trigger": trigger},
        )
    return backup


def backups_start_many(
    *, volume_names: list[str], user=None, trigger: str = "user", stop_containers: bool | None = None,
    compression: str = Backup.Compression.ZSTD,
) -> tuple[list[Backup], list[str]]:
    """Queue one backup per volume; returns (started, refusals as messages)."""
    started, refused = [], []
    for name in dict.fromkeys(volume_names):  # keep order, drop duplicates
        try:
            started.append(
                backup_start(volume_name=name, user=user, trigger=trigger,
                             stop_containers=stop_containers, compression=compression)
            )
        except CargoholdError as exc:
            refused.append(str(exc))
    return started, refused


# --- running (worker side) -------------------------------------------------------------


def archive_key(name: str, when: datetime, compression: str, storage) -> str:
    stamp = when.astimezone(dt_timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{name}/{name[:200]}-{stamp}"  # a file name has 255 bytes at most
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


@contextmanager
def containers_stopped(ctx: JobContext, backup: Backup):
    """Stop the running containers that use the volume (if asked, or labelled so);
    always start them again, in reverse order. What is stopped is saved first."""
    containers = [
        c for c in engine.list_containers()
        if engine.HELPER_LABEL not in c.labels and any(m.volume_name == backup.volume_name for m in c.mounts)
    ]
    to_stop = sorted(
        (c for c in containers if c.state == "running"
         and (backup.stop_containers or str(c.labels.get(STOP_LABEL, "")).lower() == "true")),
        key=lambda c: c.name,
    )
    if not to_stop:
        yield []
        return
    backup.stopped_containers = [{"id": c.id, "name": c.name} for c in to_stop]
    backup.restart_pending = True
    backup.save(update_fields=["stopped_containers", "restart_pending"])
    stopped = []
    try:
        for c in to_stop:
            ctx.say(f"Stopping container {c.name}")
            engine.stop_container(c.id)
            stopped.append(c)
        yield stopped
    finally:
        errors = start_again(backup.stopped_containers, say=ctx.say)
        backup.restart_pending = bool(errors)
        backup.restart_error = "; ".join(errors)
        backup.save(update_fields=["restart_pending", "restart_error"])
        if errors:
            ctx.result["warnings"] = ctx.result.get("warnings", []) + errors


def start_again(containers: list[dict], say=None) -> list[str]:
    """Start containers in reverse order; starting a running one is harmless."""
    errors = []
    for c in reversed(containers):
        if say:
            say(f"Starting container {c.get('name')} again")
        try:
            engine.start_container(c["id"])
        except engine.NotFound:
            continue  # removed meanwhile: nothing to start
        except engine.EngineError as exc:
            errors.append(f"Could not start container {c.get('name')} again: {exc}")
    return errors


def _engine_facts() -> dict:
    try:
        info = engine.info()
    except engine.EngineError:
        return {}
    return {"id": info.id, "host_name": info.host_name, "server_version": info.server_version}


def build_manifest(*, backup: Backup, ev: engine.EngineVolume, packed: tarstream.PackResult, engine_facts: dict,
                    finished_at: datetime) -> dict:
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


def backup_run(ctx: JobContext) -> dict:
    """Job handler: stream the volume through the engine into a verified archive.

    Takes the volume's lock (waiting up to BACKUP_LOCK_WAIT_SECONDS), checks the volume
    exists, optionally stops its containers, streams the engine's tar unchanged through
    the compressor into a temporary file (hashing and counting on the way), commits it
    atomically, re-reads it to verify, writes the manifest, and only then marks the row
    succeeded. On any failure the archive is removed and the row says why.
    """
    backup = Backup.objects.select_related("volume", "created_by").get(job=ctx.job)
    if backup.status != Backup.Status.QUEUED:
        return {"message": f"Backup #{backup.pk} was already {backup.status}."}
    _mark(backup, status=Backup.Status.RUNNING, started_at=timezone.now())
    storage = get_storage()
    wait = lock_wait_seconds()
    committed = False
    try:
        with ctx.lock(volume_lock(backup.volume_name), wait_seconds=wait):
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
            _mark(backup, started_at=timezone.now())
            engine_facts = _engine_facts()
            with containers_stopped(ctx, backup) as stopped:
                key = archive_key(backup.volume_name, backup.started_at, backup.compression, storage)
                _mark(backup, key=key, location=storage.location(key), storage=storage.name)
                began = time.monotonic()
                packed = _stream_to_storage(ctx, backup, storage)
                timings = {"stream_seconds": round(time.monotonic() - began, 3)}
                committed = True
            if stopped:
                from volumes.services import mirror_sync_quietly

                mirror_sync_quietly()
            began = time.monotonic()
            _verify_stored(ctx, backup, storage, packed)
            timings["verify_seconds"] = round(time.monotonic() - began, 3)
            finished = timezone.now()
            manifest = build_manifest(backup=backup, ev=ev, packed=packed, engine_facts=engine_facts,
                                       finished_at=finished)
            storage.write_json(manifest_key(backup.key), manifest, token=backup.uid.hex)
            _mark(
                backup, status=Backup.Status.SUCCEEDED, finished_at=finished, manifest=manifest,
                bytes_read=packed.stats.tar_bytes, data_bytes=packed.stats.data_bytes,
                size_bytes=packed.compressed_bytes, file_count=packed.stats.file_count, sha256=packed.sha256,
                verified=True, verified_at=finished, verify_error="",
            )
    except BaseException as exc:
        if committed:
            remove_archive(storage, backup)
        if isinstance(exc, engine.EngineError) and not isinstance(exc, (engine.EngineUnavailable, engine.NotFound)):
            # The engine's word about this volume (an NFS server that does not answer)
            # belongs on the volume's page too.
            from volumes.services import volume_error_record

            volume_error_record(name=backup.volume_name, error=str(exc))
        if isinstance(exc, JobCancelled):
            status, error = Backup.Status.CANCELLED, "Cancelled by request."
        elif isinstance(exc, CargoholdError):
            status, error = Backup.Status.FAILED, str(exc)
        else:
            status, error = Backup.Status.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}"
        if status == Backup.Status.FAILED:
            logger.warning("backup %s of %s failed: %s", backup.pk, backup.volume_name, error)
        _mark(backup, status=status, error=scrubbed_text(error), finished_at=timezone.now(),
              bytes_read=backup.bytes_read)
        _audit_finished(backup)
        raise
    _audit_finished(backup)
    from volumes.services import volume_error_clear

    volume_error_clear(name=backup.volume_name)
    return {
        "backup": backup.pk,
        **timings,
        "message": (
            f"Backed up {backup.file_count} files ({backup.bytes_read} bytes of tar) into "
            f"{backup.size_bytes} bytes, verified."
        ),
    }


def _stream_to_storage(ctx: JobContext, backup: Backup, storage) -> tarstream.PackResult:
    ctx.set_progress(0, backup.bytes_expected, "Streaming the volume from the engine")

    level = getattr(settings, "BACKUP_ZSTD_LEVEL", None) if backup.compression == "zstd" else \
        getattr(settings, "BACKUP_GZIP_LEVEL", None)
    with engine.helper_container(backup.volume_name, read_only=True, purpose="backup", job_id=ctx.job.pk) as cid:
        with storage.open_temp_writer(backup.key, token=backup.uid.hex) as writer:
            # closing(): on cancel or error the stream must end now, not when the
            # traceback is collected; the engine will not remove the helper before.
            # (Reading in a thread ahead of the compressor was measured: no faster here,
            # since zstd compresses in its own threads, and 25 MiB more memory.)
            try:
                with closing(engine.archive_stream(cid)) as chunks:
                    packed = tarstream.pack(chunks, writer, compression=backup.compression, on_chunk=ctx.advance_checked,
                                          level=level)
            finally:
                backup.bytes_read = ctx.done
            ctx.say("Saving the archive")
            writer.commit()
    _mark(backup, bytes_read=packed.stats.tar_bytes)
    return packed


def _verify_stored(ctx: JobContext, backup: Backup, storage, packed: tarstream.PackResult) -> None:
    ctx.set_progress(0, packed.compressed_bytes, "Verifying the stored archive")

    result = tarstream.verify_stream(
        _read_chunks(storage, backup.key), compression=backup.compression, sha256=packed.sha256, on_chunk=ctx.advance_checked
    )
    if result.ok and result.stats.entries != packed.stats.entries:
        result.ok = False
        result.problems.append(
            f"The stored archive has {result.stats.entries} entries; {packed.stats.entries} were written."
        )
    if not result.ok:
        raise tarstream.ArchiveError(result.message)
    ctx.done = packed.stats.tar_bytes  # the row shows what was read, not what was re-read


def remove_archive(storage, backup: Backup) -> None:
    for key in (manifest_key(backup.key), backup.key):
        try:
            storage.delete(key)
        except StorageError:
            logger.exception("could not remove %s of failed backup %s", key, backup.pk)


def _audit_finished(backup: Backup) -> None:
    ok = backup.status == Backup.Status.SUCCEEDED
    audit_record(
        action="backup_finish",
        actor=backup.created_by,
        object_type="volume",
        object_name=backup.volume_name,
        params={"backup": backup.pk, "status": backup.status, "size_bytes": backup.size_bytes,
                "sha256": backup.sha256, "location": backup.location},
        result="ok" if ok else "error",
        error="" if ok else backup.error,
    )


def backup_sync_with_job(*, job_id: int) -> None:
    """A backup whose job ended without running it (cancelled while queued, worker lost)
    takes the job's outcome. Idempotent."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.is_active:
        return
    for backup in job_outcome_adopt(model=Backup, job=job, what="backup"):
        _audit_finished(backup)


# --- verifying -------------------------------------------------------------------------


def backup_verify(*, backup: Backup, actor=None, on_chunk=None) -> tarstream.VerifyResult:
    """Re-read a stored archive: SHA-256 as recorded, decompresses to a complete tar.

    Records the outcome on the row (verified / verify_error) and in the audit trail.
    Corruption is reported, never passed: a failed check leaves `verified` False.
    """
    if backup.status != Backup.Status.SUCCEEDED or not backup.key:
        raise Refused(f"Backup #{backup.pk} has no stored archive to verify ({backup.status}).")
    storage = get_storage()
    try:
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


def backup_verify_start(*, backup: Backup, user=None, trigger: str = "user") -> Job:
    if backup.status != Backup.Status.SUCCEEDED or not backup.key:
        raise Refused(f"Backup #{backup.pk} has no stored archive to verify ({backup.status}).")
    from backups import tasks

    with transaction.atomic():
        return job_create(
            kind=KIND_VERIFY, task=tasks.verify_backup, target=str(backup.pk), target_type="backup",
            params={"backup": backup.pk}, user=user, trigger=trigger, progress_total=backup.size_bytes,
        )


def backup_verify_run(ctx: JobContext) -> dict:
    """Job handler for the Verify button: holds the backup's lock while reading it."""
    backup = Backup.objects.select_related("created_by").filter(pk=ctx.job.params.get("backup")).first()
    if backup is None:
        raise Refused("That backup no longer exists.")
    with ctx.lock(backup_lock(backup.pk), wait_seconds=30):
        ctx.set_progress(0, backup.size_bytes, "Verifying the stored archive")

        result = backup_verify(backup=backup, actor=ctx.job.created_by, on_chunk=ctx.advance_checked)
    if not result.ok:
        raise CargoholdError(result.message)
    return {"message": result.message, "backup": backup.pk}


# --- deleting --------------------------------------------------------------------------


def _refuse_if_needed(backup: Backup) -> None:
    if backup.is_active:
        raise Refused(f"Backup #{backup.pk} is still {backup.status}; cancel it first.")
    # `safety_for` is the restores app's link: a restore in place whose volume still has
    # to be put back from this backup needs it (deleting it would lose the old content).
    pending = getattr(backup, "safety_for", None)
    if pending is not None and pending.filter(rollback_pending=True).exists():
        raise Refused(
            f"Backup #{backup.pk} is the safety backup of a restore in place that still has to put "
            "the volume's previous content back; it cannot be deleted until that is done or dismissed."
        )


def backup_delete(*, backup: Backup, user=None, request=None) -> None:
    """Remove a backup's archive and manifest from storage, then its row (audited).

    Worker side (the web process has the backup folder read-only in the Compose
    deployment): pages call `backup_delete_start`. Refused while the backup runs or while
    something reads it (verify, restore: they hold its lock, which this takes too). The
    manifest goes first: a crash in between leaves an archive without a manifest
    (reported by rescan_backups), never a manifest promising an archive that is gone.
    """
    _refuse_if_needed(backup)
    from jobs.runner import WORKER_ID

    resource, owner = backup_lock(backup.pk), f"deletion of backup {backup.pk} on {WORKER_ID}"
    try:
        lock_acquire(resource=resource, owner=owner, ttl=timedelta(minutes=10))
    except LockHeld as exc:
        raise Refused(f"Backup #{backup.pk} is in use: {exc.lock.owner}.") from None
    try:
        storage = get_storage()
        params = {"backup": backup.pk, "volume": backup.volume_name, "location": backup.location,
                  "sha256": backup.sha256, "status": backup.status}
        try:
            if backup.key:
                storage.delete(manifest_key(backup.key))
                storage.delete(backup.key)
        except StorageError as exc:
            audit_record(action="backup_delete", actor=user, request=request, object_type="backup",
                         object_name=str(backup.pk), params=params, result="error", error=str(exc))
            raise
        backup.delete()
        audit_record(action="backup_delete", actor=user, request=request, object_type="backup",
                     object_name=params["backup"], params=params)
    finally:
        lock_release(resource=resource, owner=owner)


def backup_delete_start(*, backup: Backup, user=None, trigger: str = "user") -> Job:
    """Queue the deletion of a backup (the Delete button); refused at once when it would be."""
    _refuse_if_needed(backup)
    holder = lock_holder(resource=backup_lock(backup.pk))
    if holder is not None:
        raise Refused(f"Backup #{backup.pk} is in use: {holder.owner}.")
    from backups import tasks

    with transaction.atomic():
        return job_create(
            kind=KIND_DELETE, task=tasks.delete_backup, target=f"#{backup.pk} of {backup.volume_name}",
            target_type="backup", params={"backup": backup.pk}, user=user, trigger=trigger,
        )


def backup_delete_run(ctx: JobContext) -> dict:
    """Job handler for the Delete button."""
    backup_id = ctx.job.params.get("backup")
    backup = Backup.objects.filter(pk=backup_id).first()
    if backup is None:
        return {"message": f"Backup #{backup_id} was already deleted."}
    ctx.say("Deleting the archive and its manifest")
    backup_delete(backup=backup, user=ctx.job.created_by)
    return {"message": f"Deleted backup #{backup_id} of {backup.volume_name}."}


# --- the catalogue from storage ---------------------------------------------------------


def _parse_iso(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def backups_rescan() -> dict:
    """Rebuild the catalogue from the manifests in storage (the database is not the only
    copy of what exists). Adds rows for manifests it does not know, refreshes where known
    ones are, flags rows whose archive is gone, and lists archives without manifests.
    Manifests are untrusted input: anything malformed is reported and skipped."""
    storage = get_storage()
    report = {"added": [], "updated": [], "missing": [], "orphans": [], "invalid": []}
    seen_keys = set()
    for mkey, akey in storage.list_manifests():
        seen_keys.add(akey)
        try:
            data = storage.read_json(mkey)
            row = _row_from_manifest(data, akey, storage)
        except (StorageError, ValueError, KeyError, TypeError) as exc:
            report["invalid"].append(f"{mkey}: {exc}")
            continue
        existing = Backup.objects.filter(uid=row["uid"]).first()
        if existing is None:
            existing = Backup.objects.filter(key=akey).first()
        if existing is not None:
            if existing.key != akey or existing.missing:
                Backup.objects.filter(pk=existing.pk).update(key=akey, location=row["location"], missing=False)
                report["updated"].append(existing.pk)
            continue
        backup = Backup.objects.create(**row)
        report["added"].append(backup.pk)
    for key in storage.list_keys():
        if not key.endswith(MANIFEST_SUFFIX) and key not in seen_keys:
            report["orphans"].append(storage.location(key))
    for backup in Backup.objects.filter(status=Backup.Status.SUCCEEDED).exclude(key=""):
        missing = backup.key not in seen_keys and not storage.exists(backup.key)
        if missing != backup.missing:
            Backup.objects.filter(pk=backup.pk).update(missing=missing)
        if missing:
            report["missing"].append(backup.pk)
    audit_record(action="backup_rescan", object_type="storage", object_name=storage.name,
                 params={k: len(v) for k, v in report.items()})
    return report


def _row_from_manifest(data: dict, akey: str, storage) -> dict:
    if data.get("format") != FORMAT or not isinstance(data.get("format_version"), int):
        raise ValueError("not a Cargohold manifest")
    if data["format_version"] > FORMAT_VERSION:
        raise ValueError(f"format version {data['format_version']} is newer than this Cargohold")
    vol = data["volume"]
    arch = data["archive"]
    name = vol["name"]
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ValueError("bad volume name")
    compression = arch["compression"]
    if compression not in tarstream.COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}")
    sha = arch.get("sha256") or ""
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError("bad sha256")
    if not storage.exists(akey):
        raise ValueError("its archive is missing")
    origin = data.get("origin") if data.get("origin") in Backup.Origin.values else Backup.Origin.IMPORTED
    if "import" in data:
        # Cargohold writes this section only for imports: a manifest that has it and claims
        # another origin was edited, and must not make the archive pass for a volume's own.
        origin = Backup.Origin.IMPORTED
    return {
        "uid": uuid.UUID(hex=str(data["uid"])),
        "volume": Volume.objects.filter(name=name).first(),
        "volume_name": name,
        "status": Backup.Status.SUCCEEDED,
        "origin": origin,
        "compression": compression,
        "storage": storage.name,
        "key": akey,
        "location": storage.location(akey),
        "bytes_read": _int_or_none(data.get("uncompressed_bytes")) or 0,
        "data_bytes": _int_or_none((data.get("content") or {}).get("data_bytes")),
        "size_bytes": _int_or_none(arch.get("compressed_bytes")),
        "file_count": _int_or_none(data.get("file_count")),
        "sha256": sha,
        "stopped_containers": [],
        "manifest": data,
        "trigger": "rescan",
        "started_at": _parse_iso(data.get("started_at")),
        "finished_at": _parse_iso(data.get("finished_at")),
    }


# --- recovery (worker start and every minute) -------------------------------------------


def backups_recover() -> dict:
    """Repair what crashed backups left behind. Idempotent; safe beside running jobs.

    - backups whose job ended (worker killed, swept) take its outcome; their archive
      under a final name, if the crash came after the rename, is removed;
    - containers a crashed backup stopped are started again (reverse order);
    - temporary files of jobs that are no longer running are removed;
    - locks held by jobs that have ended are released (instead of waiting for expiry);
    - helper containers of those jobs are removed.
    """
    report = {"finished": [], "restarted": [], "temp_removed": [], "helpers_removed": 0}
    storage = get_storage()
    dead = list(Backup.objects.filter(status__in=Backup.ACTIVE, job__isnull=False)
                .exclude(job__status__in=Job.ACTIVE).select_related("job"))
    for backup in dead:
        backup_sync_with_job(job_id=backup.job_id)
        backup.refresh_from_db()
        if backup.key and backup.status != Backup.Status.SUCCEEDED:
            remove_archive(storage, backup)
        report["finished"].append(backup.pk)
        try:
            report["helpers_removed"] += engine.remove_job_helpers(job_id=backup.job_id)
        except engine.EngineError:
            pass
    for backup in Backup.objects.filter(restart_pending=True).select_related("job"):
        if backup.job is not None and backup.job.is_active:
            continue
        errors = start_again(backup.stopped_containers)
        Backup.objects.filter(pk=backup.pk).update(restart_pending=bool(errors), restart_error="; ".join(errors))
        if not errors:
            report["restarted"].append(backup.pk)
            audit_record(action="backup_restart_containers", object_type="volume", object_name=backup.volume_name,
                         params={"backup": backup.pk,
                                 "containers": [c.get("name") for c in backup.stopped_containers]})
    def is_dead(token: str, age_seconds: float) -> bool:
        # Ours (a backup's uid): dead once the backup is no longer active. Unknown tokens
        # (another feature's writers) only when a day old.
        try:
            status = Backup.objects.filter(uid=uuid.UUID(hex=token)).values_list("status", flat=True).first()
        except ValueError:
            status = None
        if status is not None:
            return status not in Backup.ACTIVE
        return age_seconds > 24 * 3600

    report["temp_removed"] = storage.remove_temp_files(is_dead=is_dead)
    if any(report[k] for k in ("finished", "restarted", "temp_removed")):
        logger.warning("backup recovery: %s", report)
    return report
