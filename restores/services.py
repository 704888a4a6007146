"""Restores and imports: start (web, CLI), run (worker), recover after a crash.

The web process and the CLI call the `*_start` functions (they check what the database
can tell, write a row and a job, and audit); the worker runs the job handlers
(`restore_run`, `import_run`, `restore_rollback_run`, `partial_volume_remove_run`) and
`restores_recover` (registered with jobs.recovery). Only worker-side functions call the
engine.

Every restore checks the whole archive before it touches anything: one streamed read
verifies the SHA-256 against the record and the manifest and validates every member
(tarstream.TarScanner). Only then is a volume created (new) or are containers stopped, a
safety backup taken and the volume emptied (in place). The write streams storage ->
bounded decompression -> member checks again -> the engine's archive endpoint on a
never-started helper container, uncompressed; the last piece (with the tar's end
marker) is only sent once the checksum of this second read matched too.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import roles
from accounts.services import actor_name, audit_record
from backups import services as backup_services
from backups.models import Backup
from backups.services import backup_lock, lock_wait_seconds, volume_lock
from backups.storage import StorageError, get_storage, manifest_key
from jobs.models import Job
from project.db import save_fields as _mark
from jobs.runner import WORKER_ID, JobCancelled, JobContext
from jobs.services import LockHeld, job_create, job_outcome_adopt, lock_acquire, lock_release
from project.errors import CargoholdError, Refused
from project.redact import REDACTED, scrubbed, scrubbed_text
from restores.models import Restore
import tarstream
from tarstream import (
    ArchiveError, ArchiveTooLarge, ExpansionLimit, HashingReader, Layout, ScanResult, TarScanner, UnsafeArchive,
    detect_format, size_text, tar_chunks, untrusted_limit,
)
from volumes import engine
from volumes.forms import validate_volume_name
from volumes.models import Volume

logger = logging.getLogger(__name__)

KIND_RESTORE_NEW = "restore"
KIND_RESTORE_IN_PLACE = "restore_in_place"
KIND_IMPORT = "backup_import"
KIND_ROLLBACK = "restore_rollback"
KIND_REMOVE_PARTIAL = "restore_remove_partial"
ONLY_ADMINS = "Only an Admin (the permission to create volumes)"
# Empties the volume's root but keeps the root itself (its owner and mode come back from
# the archive's `data/` member); fails loudly if anything is left.
EMPTY_COMMAND = ["sh", "-c", 'find /data -mindepth 1 -maxdepth 1 -exec rm -rf {} + && test -z "$(ls -A /data)"']
_STAGED_NAME = re.compile(r"^upload-[0-9a-f]{32}\.staged$")


def _refuse(message: str, *, action: str, user, requested_by: str, object_name: str, params: dict) -> None:
    """Every refusal is audited, then raised."""
    audit_record(action=action, actor=user, actor_name=requested_by, object_type="volume", object_name=object_name,
                 params=params, result="error", error=message)
    raise Refused(message)


def backup_label(backup: Backup) -> str:
    when = backup.finished_at or backup.created_at
    stamp = when.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if when else ""
    return f"#{backup.pk} of {backup.volume_name} ({stamp})"


def manifest_volume(backup: Backup) -> dict:
    """The volume settings the backup's manifest records (for an import: what the
    archive's manifest claims, untrusted). A restore starts from `restore_defaults`."""
    vol = (backup.manifest or {}).get("volume") or {}
    options = vol.get("options") if isinstance(vol.get("options"), dict) else {}
    labels = vol.get("labels") if isinstance(vol.get("labels"), dict) else {}
    redacted = vol.get("options_redacted") if isinstance(vol.get("options_redacted"), list) else []
    return {
        "driver": str(vol.get("driver") or "local")[:255],
        "options": {str(k): str(v) for k, v in options.items()},
        "labels": {str(k): str(v) for k, v in labels.items()},
        "redacted": [str(k) for k in redacted],
    }


def may_choose_volume_settings(user) -> bool:
    """Driver options (bind mounts, NFS, CIFS, tmpfs...), a driver other than `local`, and
    device nodes reach outside a volume, into the host: the same permission as creating a
    volume. No user: the host's own CLI (whoever runs manage.py already holds the host)."""
    return user is None or user.has_perm(roles.MANAGE_VOLUMES)


def restore_defaults(*, backup: Backup, user) -> dict:
    """What a restore into a new volume starts from: the manifest's labels, and its driver
    and options only where they may be kept: the user may choose them, and the manifest is
    Cargohold's own (an imported archive's manifest is untrusted: an Admin types them).
    `recorded` is the manifest's own settings, to say what was left out."""
    recorded = manifest_volume(backup)
    trusted = backup.origin != Backup.Origin.IMPORTED
    keep = trusted and may_choose_volume_settings(user)
    return {
        **recorded,
        "driver": recorded["driver"] if keep else "local",
        "options": recorded["options"] if keep else {},
        "redacted": recorded["redacted"] if keep else [],
        "recorded": recorded,
        "left_out": not keep and (recorded["driver"] != "local" or bool(recorded["options"])),
        "may_choose": may_choose_volume_settings(user),
        "imported": not trusted,
    }


def _require_role(user, perm: str, what: str) -> str | None:
    """Why `user` may not do this (the views and the CLI check too; this covers any caller)."""
    if user is not None and not user.has_perm(perm):
        return f"Your role does not allow {what}."
    return None


def _volume_settings_refusal(*, driver: str | None, options: dict | None, allow_devices: bool, user) -> str | None:
    """Why the settings asked for reach further than `user` may, or None."""
    if may_choose_volume_settings(user):
        return None
    if allow_devices:
        return (f"{ONLY_ADMINS} may allow device nodes (a device node gives access to the host's hardware): "
                "nothing was restored.")
    if (driver or "local").strip() != "local" or options:
        return (f"{ONLY_ADMINS} may choose a volume driver or driver options (bind mounts, NFS, CIFS, tmpfs... "
                "reach outside the volume): nothing was restored. Leave them out to restore into a plain local "
                "volume.")
    return None


def suggested_name(backup: Backup) -> str:
    when = (backup.finished_at or backup.created_at or timezone.now()).astimezone(dt_timezone.utc)
    base = re.sub(r"[^a-zA-Z0-9_.-]", "-", backup.volume_name or "restored")[:200] or "restored"
    if not base[0].isalnum():
        base = "r" + base
    return f"{base}-restored-{when:%Y%m%d-%H%M%S}"


# --- starting (web, CLI) -------------------------------------------------------------------


def _check_restorable(backup: Backup) -> None:
    if backup.is_active:
        raise Refused(f"Backup #{backup.pk} is still {backup.status}: there is nothing to restore yet.")
    if not backup.is_restorable:
        why = "its archive is missing from storage" if backup.missing else f"it {backup.status}"
        raise Refused(f"Backup #{backup.pk} cannot be restored: {why}.")
    if not backup.sha256:
        raise Refused(f"Backup #{backup.pk} has no recorded checksum; verify it first.")


def _create_restore(*, backup: Backup, mode: str, volume_name: str, kind: str, task_params: dict, user,
                    trigger: str, requested_by: str, queue: str | None, audit_extra: dict | None = None,
                    **fields) -> Restore:
    from restores import tasks

    with transaction.atomic():
        job = job_create(
            kind=kind, task=tasks.run_restore, target=volume_name,
            params={"backup": backup.pk, "requested_by": actor_name(user, requested_by), **task_params},
            user=user, trigger=trigger, progress_total=backup.size_bytes, queue=queue,
        )
        restore = Restore.objects.create(
            job=job, backup=backup, backup_label=backup_label(backup), mode=mode, volume_name=volume_name,
            created_by=job.created_by, trigger=trigger, **fields,
        )
        audit_record(
            action="restore_start", actor=user, actor_name=requested_by, object_type="volume",
            object_name=volume_name,
            params={"restore": restore.pk, "job": job.pk, "backup": backup.pk, "mode": mode,
                    "source_volume": backup.volume_name, "trigger": trigger,
                    **({"driver": restore.driver, "options": restore.options, "labels": restore.labels}
                       if mode == Restore.Mode.NEW else {}),
                    "allow_devices": restore.allow_devices, "origin": backup.origin, **(audit_extra or {})},
        )
    return restore


def restore_new_start(
    *, backup: Backup, volume_name: str, driver: str | None = None, options: dict | None = None,
    labels: dict | None = None, allow_devices: bool = False, user=None, trigger: str = "user",
    requested_by: str = "", queue: str | None = None,
) -> Restore:
    """Queue a restore of `backup` into a new volume `volume_name`.

    Driver, options and labels default to `restore_defaults` (the form shows them for
    editing): the manifest's, except that a user who may not create volumes gets the plain
    `local` driver without options, and an import's manifest never supplies driver or
    options. Choosing a driver, options or device nodes without that permission is
    refused. Refused, audited and nothing queued also when the name is invalid or taken
    (in the mirror, or by another queued restore), the backup cannot be restored, or a
    driver option still holds the manifest's redaction mark. The worker checks the engine
    again.
    """
    refusal = {"action": "restore_start", "user": user, "requested_by": requested_by, "object_name": volume_name,
               "params": {"backup": backup.pk, "mode": "new", "trigger": trigger}}
    if problem := (_require_role(user, roles.RESTORE_NEW, "restoring into a new volume")
                   or _volume_settings_refusal(driver=driver, options=options, allow_devices=allow_devices,
                                               user=user)):
        _refuse(problem, **refusal)
    defaults = restore_defaults(backup=backup, user=user)
    driver = (driver if driver is not None else defaults["driver"]).strip() or "local"
    options = dict(defaults["options"] if options is None else options)
    labels = dict(defaults["labels"] if labels is None else labels)
    try:
        _check_restorable(backup)
    except Refused as exc:
        _refuse(str(exc), **refusal)
    if problem := validate_volume_name(volume_name):
        _refuse(problem, **refusal)
    if Volume.objects.present().filter(name=volume_name).exists():
        _refuse(f"A volume named {volume_name} already exists: choose another name, or restore in place.", **refusal)
    if Restore.objects.filter(volume_name=volume_name, status__in=Restore.ACTIVE).exists():
        _refuse(f"Another restore into {volume_name} is already queued or running.", **refusal)
    redacted = [k for k, v in options.items() if v == REDACTED or (REDACTED in v and "=" in v)]
    if redacted:
        _refuse(
            f"The driver option{'s' if len(redacted) > 1 else ''} {', '.join(redacted)} "
            f"{'were' if len(redacted) > 1 else 'was'} not stored in the backup (secrets are not written "
            "beside archives): type the real value before restoring.", **refusal,
        )
    return _create_restore(
        backup=backup, mode=Restore.Mode.NEW, volume_name=volume_name, kind=KIND_RESTORE_NEW, task_params={},
        user=user, trigger=trigger, requested_by=requested_by, queue=queue,
        driver=driver, options=options, labels=labels, allow_devices=allow_devices,
    )


def restore_in_place_start(
    *, backup: Backup, confirm_name: str, allow_devices: bool = False, confirm_imported: bool = False, user=None,
    trigger: str = "user", requested_by: str = "", queue: str | None = None,
) -> Restore:
    """Queue a restore of `backup` over the content of its own volume (Admins).

    `confirm_name` must be the volume's name, typed. An imported backup was not made from
    this volume by Cargohold, whatever name it is recorded under: it also needs
    `confirm_imported`. Device nodes need the permission to create volumes. The worker
    stops the containers that use the volume, takes a safety backup, empties the volume,
    writes the archive, and starts the containers again; if the write fails it puts the
    safety backup back.
    """
    name = backup.volume_name
    refusal = {"action": "restore_start", "user": user, "requested_by": requested_by, "object_name": name,
               "params": {"backup": backup.pk, "mode": "in_place", "trigger": trigger}}
    if problem := (_require_role(user, roles.RESTORE_IN_PLACE, "restoring in place")
                   or _volume_settings_refusal(driver=None, options=None, allow_devices=allow_devices, user=user)):
        _refuse(problem, **refusal)
    try:
        _check_restorable(backup)
    except Refused as exc:
        _refuse(str(exc), **refusal)
    if confirm_name != name:
        _refuse("The name you typed does not match the volume's name; nothing was restored.", **refusal)
    if backup.origin == Backup.Origin.IMPORTED and not confirm_imported:
        _refuse(
            f"Backup #{backup.pk} was imported (an archive uploaded or found in storage), not made from this volume "
            f"by Cargohold, though it is recorded under the name {name}. Confirm that you mean to replace the "
            "volume's content with it (on the page: the checkbox; on the command line: --confirm-imported); "
            "nothing was restored.", **refusal,
        )
    if not Volume.objects.present().filter(name=name).exists():
        _refuse(f"The volume {name} is not on the engine (any more): restore into a new volume instead.", **refusal)
    if Restore.objects.filter(volume_name=name, status__in=Restore.ACTIVE).exists():
        _refuse(f"Another restore of {name} is already queued or running.", **refusal)
    unfinished = Restore.objects.filter(volume_name=name, rollback_pending=True).first()
    if unfinished is not None:
        _refuse(
            f"Restore #{unfinished.pk} has not yet put the previous content of {name} back (its page says why): "
            "wait for the recovery, press its button, or dismiss it first.", **refusal,
        )
    return _create_restore(
        backup=backup, mode=Restore.Mode.IN_PLACE, volume_name=name, kind=KIND_RESTORE_IN_PLACE, task_params={},
        user=user, trigger=trigger, requested_by=requested_by, queue=queue, allow_devices=allow_devices,
        audit_extra={"confirm_imported": bool(confirm_imported)} if backup.origin == Backup.Origin.IMPORTED else {},
    )


# --- the archive: check, then write (worker side) ------------------------------------------


def _recorded_checksums(backup: Backup, storage) -> str:
    """The SHA-256 the archive must have: the record's, which the manifests must agree with."""
    recorded = backup.sha256
    in_row = ((backup.manifest or {}).get("archive") or {}).get("sha256")
    try:
        in_storage = (storage.read_json(manifest_key(backup.key)).get("archive") or {}).get("sha256")
    except StorageError:
        in_storage = None  # an archive without a manifest file: the record alone decides
    for what, value in (("its manifest in the catalogue", in_row), ("its manifest in storage", in_storage)):
        if value is not None and value != recorded:
            raise UnsafeArchive(
                f"Backup #{backup.pk}: {what} gives the SHA-256 {value}, its record {recorded}. The archive or its "
                "manifest was changed; nothing was restored."
            )
    return recorded


def _recorded_expansion(backup: Backup) -> ExpansionLimit:
    """How far a stored archive may expand: the tar size recorded when Cargohold made or
    imported it; without a record (an archive found in storage) the import limits apply."""
    if backup.bytes_read:
        return ExpansionLimit(backup.bytes_read, f"the size recorded for backup #{backup.pk}")
    return import_expansion_limit(backup.size_bytes or 0)


def import_expansion_limit(compressed_bytes: int, *, override: int | None = None) -> ExpansionLimit:
    """The import limits of the settings (ratio, floor, cap), or an Admin's for one import."""
    return untrusted_limit(compressed_bytes, ratio=settings.IMPORT_MAX_EXPANSION_RATIO,
                           cap=settings.IMPORT_MAX_EXPANDED_BYTES, floor=settings.IMPORT_EXPANSION_FREE_BYTES,
                           override=override)


def _check_free_space(restore: Restore, *, needed: int | None, job_id: int) -> None:
    """Refuse a write that cannot fit: the free space of the volume's file system, as a
    helper container sees it on the mount (the engine reports none), against the file
    data the check pass counted. Unknown free space (df failed) lets the write go on."""
    if not needed:
        return
    free = engine.volume_free_bytes(restore.volume_name, job_id=job_id)
    if free is not None and free < needed:
        raise Refused(
            f"The archive holds {size_text(needed)} of file data, but the file system of volume "
            f"{restore.volume_name} has {size_text(free)} free; nothing was written."
        )


def check_archive(*, key: str, compression: str, sha256: str, allow_devices: bool, file_count: int | None = None,
                  storage=None, on_bytes=None, limit: ExpansionLimit | None = None) -> ScanResult:
    """Read a stored archive once: its SHA-256 and every member. Returns the ScanResult.

    Raises UnsafeArchive / ArchiveError / ArchiveTooLarge naming the problem; a changed
    checksum is named first (a tampered archive often also fails to parse).
    """
    storage = storage or get_storage()
    scanner = TarScanner(allow_devices=allow_devices, limit=limit)
    problem: CargoholdError | None = None
    with storage.open_reader(key) as raw:
        reader = HashingReader(raw, on_read=on_bytes)
        try:
            for chunk in tar_chunks(reader, compression):
                scanner.feed(chunk)
            result = scanner.close()
        except (ArchiveError, UnsafeArchive, ArchiveTooLarge) as exc:
            problem = exc
        reader.drain()
    actual = reader.hexdigest()
    if sha256 and actual != sha256:
        extra = f" ({problem})" if problem else ""
        raise ArchiveError(
            f"The archive's SHA-256 is {actual}, not the recorded {sha256}: it was changed or damaged in "
            f"storage{extra}."
        )
    if problem is not None:
        raise problem
    if file_count is not None and result.stats.file_count != file_count:
        raise ArchiveError(f"The archive holds {result.stats.file_count} files; {file_count} were recorded.")
    return result


def _tar_pieces(*, storage, key: str, compression: str, layout: Layout, allow_devices: bool, sha256: str,
                on_bytes=None, check_cancelled=None, limit: ExpansionLimit | None = None):
    """The archive as the engine gets it: uncompressed, checked again, names rewritten for
    the ./ layout. One piece is held back until the end, so the tar's end marker only
    reaches the engine once the whole stream checked out (checksum included)."""
    scanner = TarScanner(allow_devices=allow_devices, expect=layout, rewrite=layout is Layout.DOT, limit=limit)
    held = None
    with storage.open_reader(key) as raw:
        reader = HashingReader(raw)
        for chunk in tar_chunks(reader, compression):
            out = scanner.feed(chunk)
            piece = b"".join(out) if layout is Layout.DOT else chunk
            if on_bytes is not None:
                on_bytes(len(chunk))
            if check_cancelled is not None:
                check_cancelled()
            if held is not None:
                yield held
            held = piece
        reader.drain()
    scanner.close()
    if sha256 and reader.hexdigest() != sha256:
        raise ArchiveError(f"The archive changed while it was being restored (SHA-256 {reader.hexdigest()}).")
    if held:
        yield held


def write_archive(*, volume_name: str, key: str, compression: str, layout: Layout, allow_devices: bool,
                  sha256: str, job_id: int | None, storage=None, on_bytes=None, check_cancelled=None,
                  limit: ExpansionLimit | None = None) -> None:
    """Stream a stored archive into the volume through a never-started helper container.

    `limit`: the size the check pass found; an archive that grew since is cut off there.
    """
    storage = storage or get_storage()
    pieces = _tar_pieces(
        storage=storage, key=key, compression=compression, layout=layout, allow_devices=allow_devices,
        sha256=sha256, on_bytes=on_bytes, check_cancelled=check_cancelled, limit=limit,
    )
    with engine.helper_container(volume_name, read_only=False, purpose="restore", job_id=job_id) as cid:
        try:
            engine.put_archive(cid, pieces, path="/")
        finally:
            pieces.close()


def empty_volume(*, volume_name: str, job_id: int | None) -> None:
    engine.run_helper(volume_name, EMPTY_COMMAND, timeout=settings.RESTORE_EMPTY_TIMEOUT_SECONDS,
                      purpose="restore-empty", job_id=job_id)


# --- running a restore (worker side) ---------------------------------------------------------


def _audit_finished(restore: Restore) -> None:
    ok = restore.status == Restore.Status.SUCCEEDED
    audit_record(
        action="restore_finish", actor=restore.created_by,
        actor_name=(restore.job.params.get("requested_by", "") if restore.job else ""),
        object_type="volume", object_name=restore.volume_name,
        params={"restore": restore.pk, "backup": restore.backup_id, "mode": restore.mode, "status": restore.status,
                "outcome": restore.outcome, "safety_backup": restore.safety_backup_id},
        result="ok" if ok else "error", error="" if ok else restore.error,
    )


def restore_run(ctx: JobContext) -> dict:
    """Job handler of both restore kinds; see the module docstring for the order of steps."""
    restore = Restore.objects.select_related("backup", "created_by", "job").get(job=ctx.job)
    if restore.status != Restore.Status.QUEUED:
        return {"message": f"Restore #{restore.pk} was already {restore.status}."}
    _mark(restore, status=Restore.Status.RUNNING, started_at=timezone.now())
    try:
        backup = restore.backup
        if backup is None:
            raise Refused("The backup to restore from was deleted; nothing was restored.")
        _check_restorable(backup)
        if restore.in_place:
            _restore_in_place(ctx, restore, backup)
        else:
            _restore_new(ctx, restore, backup)
    except BaseException as exc:
        if isinstance(exc, JobCancelled):
            status, error = Restore.Status.CANCELLED, "Cancelled by request."
        elif isinstance(exc, CargoholdError):
            status, error = Restore.Status.FAILED, str(exc)
        else:
            status, error = Restore.Status.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}"
        # Nothing runs this restore again: its options' secrets are not kept either way.
        _mark(restore, status=status, error=scrubbed_text(error), options=scrubbed(restore.options),
              finished_at=timezone.now())
        _audit_finished(restore)
        raise
    _mark(restore, status=Restore.Status.SUCCEEDED, phase="done", finished_at=timezone.now())
    _audit_finished(restore)
    return {"restore": restore.pk, "volume": restore.volume_name, "message": restore.outcome}


def _check_phase(ctx: JobContext, restore: Restore, backup: Backup, storage, *, untouched: str):
    _mark(restore, phase="checking")
    ctx.set_progress(0, backup.size_bytes, "Checking the archive: checksum and every member")

    began = time.monotonic()
    try:
        sha = _recorded_checksums(backup, storage)
        result = check_archive(key=backup.key, compression=backup.compression, sha256=sha,
                               allow_devices=restore.allow_devices, file_count=backup.file_count,
                               storage=storage, on_bytes=ctx.advance_checked, limit=_recorded_expansion(backup))
    except (ArchiveError, UnsafeArchive, ArchiveTooLarge, StorageError) as exc:
        raise type(exc)(f"{exc} {untouched}") from None
    _mark(restore, layout=result.layout.value, file_count=result.stats.file_count, tar_bytes=result.stats.tar_bytes)
    ctx.result["check_seconds"] = round(time.monotonic() - began, 3)
    ctx.result["data_bytes"] = result.stats.data_bytes
    return sha, result


def _write_phase(ctx: JobContext, restore: Restore, *, key: str, compression: str, sha: str, layout: Layout,
                 total: int | None, message: str, cancellable: bool = True) -> None:
    _check_free_space(restore, needed=ctx.result.get("data_bytes"), job_id=ctx.job.pk)
    ctx.set_progress(0, total, message)

    def on_bytes(n: int) -> None:
        ctx.done += n

    began = time.monotonic()
    write_archive(volume_name=restore.volume_name, key=key, compression=compression, layout=layout,
                  allow_devices=restore.allow_devices, sha256=sha, job_id=ctx.job.pk, on_bytes=on_bytes,
                  check_cancelled=ctx.check_cancelled if cancellable else None,
                  limit=ExpansionLimit(restore.tar_bytes, "the size found when it was checked")
                  if restore.tar_bytes else None)
    ctx.result["write_seconds"] = round(time.monotonic() - began, 3)


def _restore_new(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    name = restore.volume_name
    storage = get_storage()
    with ctx.lock(volume_lock(name), wait_seconds=lock_wait_seconds()):
        with ctx.lock(backup_lock(backup.pk), wait_seconds=lock_wait_seconds()):
            sha, result = _check_phase(ctx, restore, backup, storage, untouched="No volume was created.")
            _mark(restore, phase="creating")
            ctx.say(f"Creating volume {name}")
            if engine.volume_exists(name):
                raise Refused(f"A volume named {name} already exists on the engine; nothing was changed.")
            _mark(restore, volume_create_requested=True)
            ev = engine.create_volume(name=name, driver=restore.driver, options=restore.options,
                                      labels=restore.labels)
            # The engine has the options now: keep only a scrubbed copy (the page, the recovery).
            _mark(restore, volume_created_at=ev.created_at.isoformat() if ev.created_at else "",
                  options=scrubbed(restore.options))
            try:
                _mark(restore, phase="writing")
                _write_phase(ctx, restore, key=backup.key, compression=backup.compression, sha=sha,
                             layout=result.layout, total=result.stats.tar_bytes,
                             message=f"Writing {result.stats.file_count} files into {name}")
                _mark(restore, written_at=timezone.now(),
                      outcome=f"Volume {name} was created with the content of backup {restore.backup_label}.")
            except BaseException as exc:
                _mark(restore, phase="removing")
                removed, why = _remove_own_volume(restore)
                if removed:
                    _mark(restore, outcome=f"The restore failed; the half-filled volume {name} was removed.")
                else:
                    _mark(restore, partial=True,
                          outcome=f"The restore failed and the half-filled volume {name} could not be removed "
                                  f"({why}): it is marked partial; remove it from this page.")
                    from volumes.services import mirror_sync_quietly, volume_error_record

                    mirror_sync_quietly()  # the mirror learns of the volume before it is marked
                    volume_error_record(name=name, error=f"Partial restore #{restore.pk}: {why}")
                if isinstance(exc, CargoholdError):
                    raise type(exc)(f"{exc} {restore.outcome}") from exc
                raise
            finally:
                from volumes.services import mirror_sync_quietly

                mirror_sync_quietly()


def _remove_own_volume(restore: Restore, *, attempts: int = 10) -> tuple[bool, str]:
    """Remove the volume this restore created: not one older than it, and the engine itself
    refuses while a container uses it. Retried a few times: after an aborted write the
    engine may need a moment to let go of the volume."""
    name = restore.volume_name
    why = ""
    for attempt in range(attempts):
        try:
            ev = engine.inspect_volume(name)
        except engine.NotFound:
            return True, ""
        except engine.EngineError as exc:
            why = str(exc)
            time.sleep(1)
            continue
        # Docker volumes have no identity but their name, and a local volume's CreatedAt is
        # its folder's ctime (it moves on as the restore writes). A volume older than the one
        # we created is certainly someone else's.
        ours = _parse_created(restore.volume_created_at)
        if ours is not None and ev.created_at is not None and ev.created_at < ours:
            return False, f"the volume {name} on the engine is older than the one this restore created"
        try:
            engine.remove_volume(name)
            return True, ""
        except engine.Conflict as exc:  # the engine may still be finishing the aborted extraction
            why = str(exc)
        except engine.EngineError as exc:
            why = str(exc)
        time.sleep(1 if attempt < attempts - 1 else 0)
    return False, why


def _parse_created(value: str):
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _take_safety_backup(ctx: JobContext, restore: Restore) -> Backup:
    """A normal backup (listed, origin "safety") of the volume as it is now, taken by the
    backups app's own handler inside this job (the volume lock is ours already)."""
    volume = Volume.objects.filter(name=restore.volume_name).first()
    safety = Backup.objects.create(
        job=ctx.job, volume=volume, volume_name=restore.volume_name, origin=Backup.Origin.SAFETY,
        compression=Backup.Compression.ZSTD, stop_containers=False,
        bytes_expected=volume.size_bytes if volume else None, created_by=restore.created_by, trigger=restore.trigger,
    )
    _mark(restore, safety_backup=safety, phase="safety_backup")
    audit_record(action="backup_start", actor=restore.created_by, object_type="volume",
                 object_name=restore.volume_name,
                 params={"backup": safety.pk, "job": ctx.job.pk, "origin": "safety", "restore": restore.pk})
    try:
        backup_services.backup_run(ctx)
    except CargoholdError as exc:
        raise CargoholdError(f"The safety backup failed, so the volume was not changed: {exc}") from exc
    safety.refresh_from_db()
    if safety.status != Backup.Status.SUCCEEDED:
        raise CargoholdError(f"The safety backup {safety.status}, so the volume was not changed: {safety.error}")
    return safety


def _restore_in_place(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    name = restore.volume_name
    storage = get_storage()
    with ctx.lock(volume_lock(name), wait_seconds=lock_wait_seconds()):
        with ctx.lock(backup_lock(backup.pk), wait_seconds=lock_wait_seconds()):
            try:
                engine.inspect_volume(name)
            except engine.NotFound:
                raise Refused(f"The volume {name} no longer exists on the engine; nothing was restored.") from None
            # Checked while the containers still run: a bad archive costs no downtime.
            sha, result = _check_phase(ctx, restore, backup, storage, untouched="The volume was not touched.")
            _mark(restore, phase="stopping")
            kept_stopped: list = []
            try:
                with backup_services.containers_stopped(ctx, restore), engine.watch_mounts(name) as watch:
                    safety = _take_safety_backup(ctx, restore)
                    if intruders := _intruders(watch, volume_name=name, job_id=ctx.job.pk):
                        raise VolumeHeld(f"The {_containers_text(intruders)} started while the safety backup was "
                                         f"taken; the volume {name} was not changed.")
                    # Written before emptying: from here on a crash means "put the safety backup back".
                    _mark(restore, rollback_pending=True, phase="emptying")
                    try:
                        ctx.say(f"Emptying volume {name}")
                        empty_volume(volume_name=name, job_id=ctx.job.pk)
                        _mark(restore, emptied_at=timezone.now(), phase="writing")
                        _write_phase(ctx, restore, key=backup.key, compression=backup.compression, sha=sha,
                                     layout=result.layout, total=result.stats.tar_bytes,
                                     message=f"Writing {result.stats.file_count} files into {name}")
                        # The last step before success: nobody else touched the volume meanwhile.
                        ctx.say(f"Checking that no other container used {name} during the restore")
                        if intruders := _intruders(watch, volume_name=name, job_id=ctx.job.pk):
                            raise VolumeHeld(f"The {_containers_text(intruders)} started while the restore wrote "
                                             f"into {name}, so the restore failed.")
                        _mark(restore, written_at=timezone.now(), rollback_pending=False, phase="starting",
                              outcome=f"Volume {name} now holds the content of backup {restore.backup_label}; its "
                                      f"previous content is in safety backup #{safety.pk}.")
                    except BaseException as exc:
                        intruders_stopped = _stop_intruders(ctx, restore)
                        if not _roll_back(ctx, restore, safety):
                            # The volume is not whole: its containers stay stopped until the
                            # recovery (or the button) has put the previous content back —
                            # a database started on an empty volume would initialise a new one.
                            kept_stopped = list(restore.stopped_containers)
                            restore.stopped_containers = []
                        elif intruders_stopped:
                            _start_intruders_again(ctx, restore, intruders_stopped)
                        if isinstance(exc, CargoholdError):
                            raise type(exc)(f"{exc} {restore.outcome}") from exc
                        raise
            finally:
                if kept_stopped:
                    _mark(restore, stopped_containers=kept_stopped, restart_pending=True,
                          restart_error="Not started again: the volume's previous content is not back yet.")
            if restore.restart_error:
                _mark(restore, outcome=f"{restore.outcome} {restore.restart_error}")
    from volumes.services import mirror_sync_quietly

    mirror_sync_quietly()


class VolumeHeld(CargoholdError):
    """Someone else used the volume while a restore in place held it."""


def _ours(labels: dict, job_id: int | None) -> bool:
    # This job's helpers carry its id; any other container mounting the volume is someone else's.
    return engine.HELPER_LABEL in labels and labels.get("cargohold.job") == str(job_id or "")


def _containers_text(containers: list[dict]) -> str:
    """'container shop-db (abc123def456) was' / 'containers a (...), b (...) were'."""
    names = ", ".join(f"{c['name']} ({c['id'][:12]})" for c in containers)
    return f"container {names} was" if len(containers) == 1 else f"containers {names} were"


def _running_users(volume_name: str, job_id: int | None) -> list[dict]:
    """Containers other than this job's helpers that have the volume mounted and run."""
    return sorted(
        ({"id": c.id, "name": c.name} for c in engine.list_containers()
         if c.state in ("running", "restarting", "paused") and not _ours(c.labels, job_id)
         and any(m.volume_name == volume_name for m in c.mounts)),
        key=lambda c: c["name"],
    )


def _intruders(watch: engine.MountWatch, *, volume_name: str, job_id: int) -> list[dict]:
    """Containers that used the volume while this restore held it: every mount the engine
    reported since the containers were stopped (so also one started and removed again
    meanwhile), and whatever runs with it mounted now. Cargohold cannot stop someone with
    the Docker socket from starting a container; it can notice and not report success."""
    found = {c["id"]: c for c in _running_users(volume_name, job_id)}
    for m in watch.mounts():
        if not _ours(m.labels, job_id):
            found.setdefault(m.container_id, {"id": m.container_id, "name": m.container_name or m.container_id[:12]})
    return sorted(found.values(), key=lambda c: c["name"])


def _stop_intruders(ctx: JobContext, restore: Restore) -> list[dict]:
    """Stop what someone started on the volume during the restore before its previous
    content goes back: emptying a volume under a running program would wreck both. Each
    is recorded beside the restore's own stopped containers first, so the recovery starts
    it again should this worker die; one that cannot be stopped makes _roll_back refuse."""
    try:
        running = _running_users(restore.volume_name, ctx.job.pk)
    except engine.EngineError:
        return []  # the engine is not answering: _roll_back's own check reports it
    stopped = []
    for c in running:
        _mark(restore, stopped_containers=[*restore.stopped_containers, c], restart_pending=True)
        ctx.say(f"Stopping container {c['name']}, started during the restore")
        try:
            engine.stop_container(c["id"])
        except engine.NotFound:
            continue
        except engine.EngineError as exc:
            logger.warning("restore %s: could not stop %s: %s", restore.pk, c["name"], exc)
            continue
        stopped.append(c)
    return stopped


def _start_intruders_again(ctx: JobContext, restore: Restore, intruders: list[dict]) -> None:
    """They were running when we stopped them: they run again, now on the previous content."""
    errors = backup_services.start_again(intruders, say=ctx.say)
    own = [c for c in restore.stopped_containers if c not in intruders]
    _mark(restore, restart_pending=bool(errors or own), restart_error="; ".join(errors),
          outcome=f"{restore.outcome} The {_containers_text(intruders)} stopped for that and "
                  + ("; ".join(errors) + "." if errors else "started again."))


def _roll_back(ctx: JobContext | None, restore: Restore, safety: Backup | None) -> bool:
    """Put the safety backup back into the volume (after a failed write, or after a crash).

    Records the outcome on the row; returns True when the volume holds its previous
    content again. Not cancellable: a half-restored volume is worse than waiting.
    """
    name = restore.volume_name
    _mark(restore, phase="rolling_back")
    try:
        engine.inspect_volume(name)
    except engine.NotFound:
        # Removed meanwhile (by a person): there is nothing left to put anything back into.
        _mark(restore, rollback_pending=False, rollback_error=f"The volume {name} no longer exists.",
              outcome=f"The volume {name} was removed before its previous content could be put back; "
                      + (f"that content is in safety backup #{safety.pk}." if safety is not None else "."))
        return False
    except engine.EngineError:
        pass  # the attempt below reports it
    try:
        if safety is None or not safety.is_restorable:
            raise CargoholdError("there is no usable safety backup")
        # Never empty a volume under a running program (started after a crash, or one we
        # could not stop): it would lose what it writes, and we would restore into a moving target.
        if users := _running_users(name, restore.job_id):
            raise CargoholdError(f"the {_containers_text(users)} running with the volume mounted; stop "
                                 f"{'it' if len(users) == 1 else 'them'} first")
        if ctx is not None:
            ctx.say(f"Putting the previous content of {name} back from safety backup #{safety.pk}")
        empty_volume(volume_name=name, job_id=restore.job_id)
        total = safety.bytes_read or None

        def on_bytes(n: int) -> None:
            if ctx is not None:
                ctx.done += n

        if ctx is not None:
            ctx.set_progress(0, total, f"Putting the previous content back from safety backup #{safety.pk}")
        write_archive(volume_name=name, key=safety.key, compression=safety.compression, layout=Layout.DATA,
                      allow_devices=True, sha256=safety.sha256, job_id=restore.job_id, on_bytes=on_bytes)
    except Exception as exc:
        held = f"safety backup #{safety.pk}" if safety is not None else "no safety backup"
        _mark(restore, rollback_error=str(exc),
              outcome=f"Putting the volume's previous content back failed too ({exc}); it is in {held}. "
                      "Cargohold's recovery retries; restore that backup in place if it keeps failing.")
        audit_record(action="restore_rollback", object_type="volume", object_name=name,
                     params={"restore": restore.pk, "safety_backup": restore.safety_backup_id},
                     result="error", error=str(exc))
        return False
    _mark(restore, rollback_pending=False, rolled_back_at=timezone.now(), rollback_error="",
          outcome=f"The volume's previous content was put back from safety backup #{safety.pk}.")
    audit_record(action="restore_rollback", object_type="volume", object_name=name,
                 params={"restore": restore.pk, "safety_backup": safety.pk})
    return True


def restore_sync_with_job(*, job_id: int) -> None:
    """A restore whose job ended without the handler finishing (cancelled while queued,
    worker killed) takes the job's outcome. Idempotent."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.is_active:
        return
    for restore in job_outcome_adopt(model=Restore, job=job, what="restore"):
        if restore.mode == Restore.Mode.NEW and restore.volume_create_requested and not restore.written_at:
            _mark(restore, partial=True,
                  outcome=f"The restore stopped half-way; the volume {restore.volume_name} it created is "
                          "incomplete, marked partial: remove it from this page.")
            from volumes.services import mirror_sync_quietly, volume_error_record

            mirror_sync_quietly()  # the killed worker never told the mirror about the volume
            volume_error_record(name=restore.volume_name,
                                error=f"Partial restore #{restore.pk}: incomplete content; removable.")
        _audit_finished(restore)


# --- buttons: put the previous content back, remove a partial volume -------------------------


def restore_rollback_start(*, restore: Restore, user=None, trigger: str = "user", queue: str | None = None) -> Job:
    if not restore.rollback_pending or restore.is_active:
        raise Refused("There is nothing to put back for this restore.")
    from restores import tasks

    with transaction.atomic():
        job = job_create(kind=KIND_ROLLBACK, task=tasks.rollback_restore, target=restore.volume_name,
                         params={"restore": restore.pk}, user=user, trigger=trigger, queue=queue)
        audit_record(action="restore_rollback_start", actor=user, object_type="volume",
                     object_name=restore.volume_name, params={"restore": restore.pk, "job": job.pk})
    return job


def restore_rollback_run(ctx: JobContext) -> dict:
    restore = Restore.objects.select_related("safety_backup").filter(pk=ctx.job.params.get("restore")).first()
    if restore is None or not restore.rollback_pending:
        return {"message": "Nothing to put back (already done)."}
    with ctx.lock(volume_lock(restore.volume_name), wait_seconds=lock_wait_seconds()):
        restore.refresh_from_db()
        if not restore.rollback_pending:
            return {"message": "Nothing to put back (already done)."}
        if not _roll_back(ctx, restore, restore.safety_backup):
            raise CargoholdError(restore.outcome)
        _restart_after_recovery(restore)
    return {"message": restore.outcome}


def partial_volume_remove_start(*, restore: Restore, user=None, trigger: str = "user", queue: str | None = None) -> Job:
    if not restore.partial or restore.is_active:
        raise Refused("This restore left no partial volume to remove.")
    from restores import tasks

    with transaction.atomic():
        job = job_create(kind=KIND_REMOVE_PARTIAL, task=tasks.remove_partial_volume, target=restore.volume_name,
                         params={"restore": restore.pk}, user=user, trigger=trigger, queue=queue)
        audit_record(action="restore_remove_partial_start", actor=user, object_type="volume",
                     object_name=restore.volume_name, params={"restore": restore.pk, "job": job.pk})
    return job


def partial_volume_remove_run(ctx: JobContext) -> dict:
    """Remove the half-filled volume of a failed restore: only if it is still the volume
    that restore created (same creation time) and no container uses it."""
    restore = Restore.objects.filter(pk=ctx.job.params.get("restore")).first()
    if restore is None or not restore.partial:
        return {"message": "Nothing to remove (already done)."}
    name = restore.volume_name
    with ctx.lock(volume_lock(name), wait_seconds=lock_wait_seconds()):
        users = [c.name for c in engine.list_containers() if any(m.volume_name == name for m in c.mounts)
                 and engine.HELPER_LABEL not in c.labels]
        if users:
            raise Refused(f"The volume {name} is used by {', '.join(users)}: it is not removed.")
        engine.remove_job_helpers(job_id=restore.job_id) if restore.job_id else None
        removed, why = _remove_own_volume(restore, attempts=3)
        if not removed:
            raise CargoholdError(f"The partial volume {name} was not removed: {why}.")
    _mark(restore, partial=False, partial_removed_at=timezone.now(),
          outcome=f"The half-filled volume {name} was removed.")
    from volumes.services import mirror_sync_quietly, volume_error_clear

    volume_error_clear(name=name)
    mirror_sync_quietly()
    audit_record(action="restore_remove_partial", actor=ctx.job.created_by, object_type="volume", object_name=name,
                 params={"restore": restore.pk})
    return {"message": restore.outcome}


def restore_dismiss(*, restore: Restore, user=None, request=None) -> None:
    """An Admin accepts the volume as it is (no safety backup to put back, say): the
    pending put-back is dropped, and the recovery then starts the containers again."""
    if not restore.rollback_pending or restore.is_active:
        raise Refused("There is nothing pending to dismiss for this restore.")
    who = actor_name(user, "")
    _mark(restore, rollback_pending=False, rollback_error=f"{restore.rollback_error} Dismissed by {who}.".strip(),
          outcome=f"{restore.outcome} {who} dismissed putting the previous content back; the volume stays as it is."
          .strip())
    audit_record(action="restore_dismiss", actor=user, request=request, object_type="volume",
                 object_name=restore.volume_name, params={"restore": restore.pk})


# --- recovery (worker start and every minute) ---------------------------------------------


def _restart_after_recovery(restore: Restore) -> None:
    if not restore.restart_pending:
        return
    errors = backup_services.start_again(restore.stopped_containers)
    _mark(restore, restart_pending=bool(errors), restart_error="; ".join(errors))
    if not errors:
        audit_record(action="restore_restart_containers", object_type="volume", object_name=restore.volume_name,
                     params={"restore": restore.pk,
                             "containers": [c.get("name") for c in restore.stopped_containers]})


def restores_recover() -> dict:
    """Repair what crashed restores left. Idempotent; safe beside running jobs.

    - restores whose job ended take its outcome; a new volume a killed restore half
      filled is marked partial (removable from the restore's page);
    - in place, once the volume was about to be emptied: the safety backup is put back
      (under the volume's lock; skipped while someone else holds it);
    - then the containers the restore stopped are started again.
    """
    report = {"finished": [], "rolled_back": [], "restarted": [], "skipped": []}
    dead = Restore.objects.filter(status__in=Restore.ACTIVE, job__isnull=False).exclude(job__status__in=Job.ACTIVE)
    for restore in list(dead):
        restore_sync_with_job(job_id=restore.job_id)
        report["finished"].append(restore.pk)
        try:
            engine.remove_job_helpers(job_id=restore.job_id)
        except engine.EngineError:
            pass
    ended = Restore.objects.exclude(status__in=Restore.ACTIVE).exclude(job__status__in=Job.ACTIVE)
    for restore in list(ended.filter(rollback_pending=True).select_related("safety_backup")):
        owner = f"recovery of restore {restore.pk} on {WORKER_ID}"
        try:
            lock_acquire(resource=volume_lock(restore.volume_name), owner=owner, ttl=_ttl())
        except LockHeld:
            report["skipped"].append(restore.pk)
            continue
        try:
            restore.refresh_from_db()
            if restore.rollback_pending and _roll_back(None, restore, restore.safety_backup):
                report["rolled_back"].append(restore.pk)
        finally:
            lock_release(resource=volume_lock(restore.volume_name), owner=owner)
    for restore in list(ended.filter(restart_pending=True, rollback_pending=False)):
        _restart_after_recovery(restore)
        if not restore.restart_pending:
            report["restarted"].append(restore.pk)
    if report["rolled_back"] or report["restarted"]:
        from volumes.services import mirror_sync_quietly

        mirror_sync_quietly()
    if any(report.values()):
        logger.warning("restore recovery: %s", report)
    return report


def _ttl():
    from datetime import timedelta

    # Long enough for putting a large volume back; released as soon as it is done.
    return timedelta(seconds=max(settings.LOCK_TTL_SECONDS, 6 * 3600))


# --- imports ---------------------------------------------------------------------------------


def upload_dir() -> Path:
    path = Path(settings.UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def staged_path(name: str) -> Path:
    if not isinstance(name, str) or not _STAGED_NAME.match(name):
        raise Refused("Invalid staged upload name.")
    return upload_dir() / name


def import_volume_name(original_name: str) -> str:
    """A volume name from an uploaded file's name (backup.tar.gz -> backup)."""
    base = Path(original_name or "").name
    for ext in (".tar.zst", ".tar.zstd", ".tar.gz", ".tgz", ".tzst", ".tar", ".zst", ".gz"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", base).strip("-._")[:200]
    if len(base) < 2 or not base[0].isalnum():
        base = f"imported-{base}" if base else "imported"
    return base


def import_start(*, source: Path, volume_name: str, original_name: str = "", user=None, trigger: str = "user",
                 requested_by: str = "", staged: bool = True, queue: str | None = None,
                 max_expanded_bytes: int | None = None) -> Backup:
    """Queue the import of an archive file as a backup of origin "imported".

    `staged=True`: `source` is an upload in UPLOAD_DIR that the worker imports and then
    deletes. `staged=False` (the CLI): the caller runs the job itself with `run_job`,
    reading `source` where it is. The format is checked from the content at once.

    The archive is untrusted whatever it holds: its backup is recorded as imported (shown
    so everywhere, and a restore in place of it asks for a confirmation), and a restore of
    it never takes a driver or driver options from a manifest (`restore_defaults`).
    """
    refusal = {"action": "backup_import", "user": user, "requested_by": requested_by, "object_name": volume_name,
               "params": {"file": original_name or source.name, "trigger": trigger}}
    if problem := (_require_role(user, roles.DOWNLOAD_ARCHIVE, "importing archives")
                   or validate_volume_name(volume_name)):
        _refuse(problem, **refusal)
    # Raising the decompression-bomb limit lets an archive fill the engine's disk: Admins only.
    if max_expanded_bytes and (problem := _require_role(user, roles.MANAGE_VOLUMES,
                                                        "raising the expansion limit of an import")):
        _refuse(problem, **refusal)
    try:
        with open(source, "rb") as f:
            head = f.read(4096)
            size = f.seek(0, 2)
        fmt = detect_format(head)
    except ArchiveError as exc:
        _refuse(str(exc), **refusal)
    except OSError as exc:
        _refuse(f"Cannot read {source}: {exc.strerror or exc}.", **refusal)
    limit = settings.UPLOAD_MAX_BYTES
    if limit and size > limit:
        _refuse(f"The archive is {size} bytes; at most {limit} bytes are accepted (UPLOAD_MAX_BYTES).", **refusal)
    from restores import tasks

    params = {"original_name": (original_name or source.name)[:255], "format": fmt, "size": size,
              "requested_by": actor_name(user, requested_by)}
    if max_expanded_bytes:
        params["max_expanded_bytes"] = int(max_expanded_bytes)
    if staged:
        params["staged"] = staged_path(source.name).name
    else:
        params["source"] = str(Path(source).resolve())
    with transaction.atomic():
        job = job_create(kind=KIND_IMPORT, task=tasks.import_archive if staged else None,
                         target=volume_name, target_type="backup", params=params, user=user, trigger=trigger,
                         progress_total=size, queue=queue)
        backup = Backup.objects.create(
            job=job, volume=Volume.objects.filter(name=volume_name).first(), volume_name=volume_name,
            origin=Backup.Origin.IMPORTED, compression="gzip" if fmt == "gzip" else "zstd",
            created_by=job.created_by, trigger=trigger,
        )
        audit_record(action="backup_import_start", actor=user, actor_name=requested_by, object_type="backup",
                     object_name=str(backup.pk),
                     params={"volume": volume_name, "file": params["original_name"], "format": fmt, "size": size,
                             "job": job.pk, "trigger": trigger})
    return backup


def _import_source(job: Job) -> Path:
    if job.params.get("staged"):
        return staged_path(job.params["staged"])
    if job.trigger == "cli" and job.params.get("source"):
        return Path(job.params["source"])
    raise Refused("The import has no file to read.")


def import_run(ctx: JobContext) -> dict:
    """Job handler: validate an archive, store it (gzip/zstd as uploaded, plain tar
    compressed with zstd), checksum, re-read to verify, write its manifest.

    Only workers write into storage. Every member is checked like a restore checks it,
    so a refused archive never becomes a backup. The staged upload is deleted at the end
    whatever happens.
    """
    backup = Backup.objects.select_related("created_by").get(job=ctx.job)
    if backup.status != Backup.Status.QUEUED:
        return {"message": f"Import #{backup.pk} was already {backup.status}."}
    _mark(backup, status=Backup.Status.RUNNING, started_at=timezone.now())
    storage = get_storage()
    committed = False
    source = None
    try:
        source = _import_source(ctx.job)
        fmt = ctx.job.params.get("format")
        with open(source, "rb") as f:
            if detect_format(f.read(4096)) != fmt:
                raise ArchiveError("The file changed since it was uploaded.")
            f.seek(0)
            key = backup_services.archive_key(backup.volume_name, backup.started_at, backup.compression, storage)
            _mark(backup, key=key, location=storage.location(key), storage=storage.name)
            ctx.set_progress(0, ctx.job.params.get("size"), "Checking and storing the archive")
            result, sha, stored_bytes, upload_sha = _store_import(ctx, f, fmt, key, backup, storage)
        committed = True
        ctx.set_progress(0, stored_bytes, "Verifying the stored archive")
        check_archive(key=key, compression=backup.compression, sha256=sha, allow_devices=True,
                      file_count=result.stats.file_count, storage=storage,
                      on_bytes=lambda n: setattr(ctx, "done", ctx.done + n))
        finished = timezone.now()
        ev = engine.EngineVolume(name=backup.volume_name, driver="local", mountpoint="", scope="local", options={},
                                 labels={}, created_at=None)
        packed = tarstream.PackResult(stats=result.stats, sha256=sha, compressed_bytes=stored_bytes)
        manifest = backup_services.build_manifest(backup=backup, ev=ev, packed=packed, engine_facts={},
                                                   finished_at=finished)
        if result.layout is Layout.DOT:
            manifest["archive"]["layout"] = (
                "tar, members under ./ (the volume's root); restore with `tar -xf <archive> -C <volume folder>`"
            )
        manifest["import"] = {
            "original_name": ctx.job.params.get("original_name", ""), "uploaded_format": fmt,
            "uploaded_bytes": ctx.job.params.get("size"), "uploaded_sha256": upload_sha,
            "root": result.layout.value, "devices": result.stats.others,
        }
        storage.write_json(manifest_key(key), manifest, token=backup.uid.hex)
        _mark(backup, status=Backup.Status.SUCCEEDED, finished_at=finished, manifest=manifest,
              bytes_read=result.stats.tar_bytes, data_bytes=result.stats.data_bytes, size_bytes=stored_bytes,
              file_count=result.stats.file_count, sha256=sha, verified=True, verified_at=finished, verify_error="")
    except BaseException as exc:
        if committed:
            backup_services.remove_archive(storage, backup)
        if isinstance(exc, JobCancelled):
            status, error = Backup.Status.CANCELLED, "Cancelled by request."
        elif isinstance(exc, CargoholdError):
            status, error = Backup.Status.FAILED, str(exc)
        else:
            status, error = Backup.Status.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}"
        _mark(backup, status=status, error=error, finished_at=timezone.now())
        _audit_import(backup, ctx.job)
        raise
    finally:
        if source is not None and ctx.job.params.get("staged"):
            source.unlink(missing_ok=True)
    _audit_import(backup, ctx.job)
    return {"backup": backup.pk, "message": (
        f"Imported {backup.file_count} files ({result.layout.description}) as backup #{backup.pk} "
        f"of {backup.volume_name}; SHA-256 {backup.sha256}."
    )}


def _store_import(ctx: JobContext, f, fmt: str, key: str, backup: Backup, storage):
    # The archive is untrusted: its expanded size is bounded by the import limits (or the
    # Admin's for this import), refused before it is stored, long before a restore.
    limit = import_expansion_limit(ctx.job.params.get("size") or 0,
                                   override=ctx.job.params.get("max_expanded_bytes"))
    scanner = TarScanner(allow_devices=True, limit=limit)  # devices are refused at restore time unless allowed

    with storage.open_temp_writer(key, token=backup.uid.hex) as writer:
        if fmt in ("zstd", "gzip"):
            # Stored as uploaded: the user's own checksum of the file stays valid.
            reader = HashingReader(f, on_read=ctx.advance_checked, sink=writer)
            for chunk in tar_chunks(reader, fmt):
                scanner.feed(chunk)
            reader.drain()
            result = scanner.close()
            sha = upload_sha = reader.hexdigest()
            stored = reader.bytes_read
        else:
            reader = HashingReader(f, on_read=ctx.advance_checked)
            comp = tarstream.compressor("zstd", level=getattr(settings, "BACKUP_ZSTD_LEVEL", None))
            sink = tarstream.HashingWriter(writer)
            for chunk in tar_chunks(reader, "tar"):
                scanner.feed(chunk)
                sink.write(comp.feed(chunk))
            result = scanner.close()
            sink.write(comp.finish())
            sha, stored, upload_sha = sink.hexdigest(), sink.bytes_written, reader.hexdigest()
        ctx.say("Saving the archive")
        writer.commit()
    return result, sha, stored, upload_sha


def _audit_import(backup: Backup, job: Job) -> None:
    ok = backup.status == Backup.Status.SUCCEEDED
    audit_record(
        action="backup_import", actor=backup.created_by, actor_name=job.params.get("requested_by", ""),
        object_type="backup", object_name=str(backup.pk),
        params={"volume": backup.volume_name, "file": job.params.get("original_name", ""), "status": backup.status,
                "sha256": backup.sha256, "location": backup.location},
        result="ok" if ok else "error", error="" if ok else backup.error,
    )


def uploads_clean(*, older_than_seconds: int = 24 * 3600) -> list[str]:
    """Remove staged uploads no job will import (their job ended, or a day old and unknown)."""
    removed = []
    folder = Path(settings.UPLOAD_DIR)
    if not folder.is_dir():
        return removed
    pending = set(
        Job.objects.filter(kind=KIND_IMPORT, status__in=Job.ACTIVE).values_list("params__staged", flat=True)
    )
    now = time.time()
    for path in folder.iterdir():
        if path.name in pending or not path.is_file():
            continue
        if path.name.endswith(".partial") or _STAGED_NAME.match(path.name):
            try:
                if now - path.stat().st_mtime > older_than_seconds or (
                    _STAGED_NAME.match(path.name) and Job.objects.filter(
                        kind=KIND_IMPORT, params__staged=path.name).exclude(status__in=Job.ACTIVE).exists()
                ):
                    path.unlink()
                    removed.append(path.name)
            except FileNotFoundError:
                continue
    return removed
