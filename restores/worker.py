"""Restores, worker side: perform the restore kinds, end them, put volumes back.

Registered with jobs.kinds (restores.apps): `restore_perform` for both restore kinds,
`partial_volume_remove_perform` for its button (the put-back button's is in
restores.rollback), and `restore_on_end` for every restore's job (audit, secrets, a half-filled volume a dead
worker left). The order of a restore: check the whole archive first (restores.archive_io);
only then create the volume (new) or stop the containers, take a safety backup (its own
child job, the backups app's `backup_write` under the volume lock held here), empty the
volume and write (in place). The in-place steps watch the volume's mounts: a container
someone else starts meanwhile fails the restore, which puts the previous content back
(restores.rollback).

Over 450 lines: the restore kind with the two shared skeletons (restore_new_steps, restore_in_place_steps) every restore writer uses; intruder handling is the next piece to move out.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from backups.consistency import containers_stopped, start_again
from backups.models import Backup
from backups.services import KIND_BACKUP, lock_wait_seconds
from backups.storage import StorageError, backup_storage
from backups.worker import backup_write
from jobs.locks import backup_lock, volume_lock
from jobs.models import Job
from jobs.runner import JobContext, job_inline
from jobs.services import OWNER_GONE_ERROR, job_create
from project.db import save_fields
from project.errors import CargoholdError, Refused
from project.redact import scrubbed
from restores import archive_io, restic_io
from restores.rollback import containers_text, is_own_helper, roll_back, running_users
from restores.models import Restore
from restores.services import check_restorable
from tarstream import ArchiveError, ArchiveTooLarge, ExpansionLimit, Layout, UnsafeArchive
from volumes import engine
from volumes.models import Volume
from volumes.services import mirror_sync_quietly, volume_error_clear, volume_error_record

logger = logging.getLogger(__name__)


# --- ending (every restore, whatever ended it) ------------------------------------------------


def restore_on_end(job: Job) -> None:
    """Once, after a restore's job ended (its perform, a cancel while queued, a dead worker).

    Its options' secrets go (nothing runs this restore again); a new volume a dead worker
    half filled is marked partial (removable from the restore's page) and its helper
    containers removed; the end is audited. Rolling a volume back after a dead worker is
    the recovery's (restores.recovery): it needs the volume lock and may have to wait.
    """
    restore = Restore.objects.select_related("job").filter(job=job).first()
    if restore is None:
        return
    save_fields(restore, options=scrubbed(restore.options))
    died = job.error == OWNER_GONE_ERROR  # its perform never reached its own clean-up
    if died:
        try:
            engine.remove_job_helpers(job_id=job.pk)
        except engine.EngineError:
            pass
    if died and restore.mode == Restore.Mode.NEW and restore.volume_create_requested and not restore.written_at:
        save_fields(restore, partial=True,
                    outcome=f"The restore stopped half-way; the volume {restore.volume_name} it created is "
                            "incomplete, marked partial: remove it from this page.")
        mirror_sync_quietly()  # the dead worker never told the mirror about the volume
        volume_error_record(name=restore.volume_name,
                            error=f"Partial restore #{restore.pk}: incomplete content; removable.")
    ok = job.status == Job.Status.SUCCEEDED
    audit_record(
        action="restore_finish", actor=job.created_by, actor_name=job.params.get("requested_by", ""),
        object_type="volume", object_name=restore.volume_name,
        params={"restore": restore.pk, "backup": restore.backup_id, "mode": restore.mode, "status": job.status,
                "outcome": restore.outcome, "safety_backup": restore.safety_backup_id},
        result="ok" if ok else "error", error="" if ok else job.error,
    )


# --- performing a restore -------------------------------------------------------------------


def restore_perform(ctx: JobContext) -> dict:
    """Perform both restore kinds; see the module docstring for the order of steps."""
    restore = Restore.objects.select_related("backup", "job").get(job=ctx.job)
    backup = restore.backup
    if backup is None:
        raise Refused("The backup to restore from was deleted; nothing was restored.")
    check_restorable(backup)
    if restic_io.is_restic(backup):  # a restic snapshot: restic restores it (restores.restic_io)
        if restore.in_place:
            restic_io.restic_restore_in_place(ctx, restore, backup)
        else:
            restic_io.restic_restore_new(ctx, restore, backup)
    elif restore.paths:  # some files and folders of an archive (restores.partial)
        from restores import partial

        if restore.in_place:
            partial.restore_paths_in_place(ctx, restore, backup)
        else:
            partial.restore_paths_new(ctx, restore, backup)
    elif restore.in_place:
        _restore_in_place(ctx, restore, backup)
    else:
        _restore_new(ctx, restore, backup)
    save_fields(restore, phase="done")
    return {"restore": restore.pk, "volume": restore.volume_name, "message": restore.outcome}


def _check_phase(ctx: JobContext, restore: Restore, backup: Backup, storage, *, untouched: str, of: int):
    save_fields(restore, phase="checking")
    ctx.step("Checking the archive: checksum and every member", number=1, of=of, total=backup.size_bytes)

    began = time.monotonic()
    try:
        sha = archive_io.recorded_checksum(backup, storage)
        result = archive_io.check_archive(
            key=backup.key, compression=backup.compression, sha256=sha, allow_devices=restore.allow_devices,
            file_count=backup.file_count, storage=storage, on_bytes=ctx.advance_checked,
            limit=archive_io.recorded_expansion(backup))
    except (ArchiveError, UnsafeArchive, ArchiveTooLarge, StorageError) as exc:
        raise type(exc)(f"{exc} {untouched}") from None
    save_fields(restore, layout=result.layout.value, file_count=result.stats.file_count,
                tar_bytes=result.stats.tar_bytes)
    ctx.result["check_seconds"] = round(time.monotonic() - began, 3)
    ctx.result["data_bytes"] = result.stats.data_bytes
    return sha, result


def _recorded_sha(backup: Backup, storage, *, untouched: str) -> str:
    try:
        return archive_io.recorded_checksum(backup, storage)
    except (ArchiveError, UnsafeArchive, StorageError) as exc:
        raise type(exc)(f"{exc} {untouched}") from None


def _single_pass_phase(ctx: JobContext, restore: Restore, backup: Backup, storage, *, sha: str, image: str) -> None:
    """Check and write in one read of the archive (archive_io.write_archive_single_pass)."""
    archive_io.check_free_space(restore.volume_name, needed=backup.data_bytes, job_id=ctx.job.pk)
    ctx.step(f"Checking every member and writing {backup.file_count} files into {restore.volume_name}",
             number=1, of=1, total=backup.size_bytes)
    began = time.monotonic()
    result = archive_io.write_archive_single_pass(
        volume_name=restore.volume_name, key=backup.key, sha256=sha, allow_devices=restore.allow_devices,
        job_id=ctx.job.pk, image=image, storage=storage, file_count=backup.file_count,
        limit=archive_io.recorded_expansion(backup), on_bytes=ctx.advance_checked,
        check_cancelled=ctx.check_cancelled, on_channel=archive_io.channel_reporter(ctx))
    save_fields(restore, layout=result.layout.value, file_count=result.stats.file_count,
                tar_bytes=result.stats.tar_bytes)
    ctx.result.update(data_path="helper", single_pass=True, data_bytes=result.stats.data_bytes,
                      write_seconds=round(time.monotonic() - began, 3))


def _write_phase(ctx: JobContext, restore: Restore, *, key: str, compression: str, sha: str, layout: Layout,
                 total: int | None, message: str, of: int, storage=None) -> None:
    archive_io.check_free_space(restore.volume_name, needed=ctx.result.get("data_bytes"), job_id=ctx.job.pk)
    ctx.step(message, number=of, of=of, total=total)  # the write is the last step

    def on_bytes(n: int) -> None:
        ctx.done += n

    began = time.monotonic()
    ctx.result["data_path"] = archive_io.write_archive(
        volume_name=restore.volume_name, key=key, compression=compression, layout=layout, storage=storage,
        allow_devices=restore.allow_devices, sha256=sha, job_id=ctx.job.pk, on_bytes=on_bytes,
        check_cancelled=ctx.check_cancelled, on_channel=archive_io.channel_reporter(ctx),
        limit=ExpansionLimit(restore.tar_bytes, "the size found when it was checked") if restore.tar_bytes else None)
    ctx.result["write_seconds"] = round(time.monotonic() - began, 3)


def _restore_new(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    name = restore.volume_name
    storage = backup_storage(backup)

    def check():
        # Own archives into a new volume: checked and written in one read (archive_io).
        image = archive_io.single_pass_image(backup, in_place=False)
        if image:
            sha = _recorded_sha(backup, storage, untouched="No volume was created.")
            return lambda: _single_pass_phase(ctx, restore, backup, storage, sha=sha, image=image)
        sha, result = _check_phase(ctx, restore, backup, storage, untouched="No volume was created.", of=2)
        return lambda: _write_phase(ctx, restore, key=backup.key, compression=backup.compression, sha=sha,
                                    layout=result.layout, total=result.stats.tar_bytes,
                                    message=f"Writing {result.stats.file_count} files into {name}", of=2,
                                    storage=storage)

    restore_new_steps(ctx, restore, backup, check=check,
                      outcome=f"Volume {name} was created with the content of backup {restore.backup_label}.")


def restore_new_steps(ctx: JobContext, restore: Restore, backup: Backup, *, check, outcome: str) -> None:
    """The steps of every restore into a new volume, whatever writes the content: the
    locks; `check()` before anything exists (it returns the function that writes); the
    name free on the engine; the volume created (recorded before and after, for the
    recovery); the write; on any failure the half-filled volume removed, or marked
    partial when the engine will not let it go."""
    name = restore.volume_name
    with ctx.lock(volume_lock(name), wait_seconds=lock_wait_seconds()):
        with ctx.lock(backup_lock(backup.pk), wait_seconds=lock_wait_seconds()):
            write = check()
            save_fields(restore, phase="creating")
            ctx.say(f"Creating volume {name}")
            if engine.volume_exists(name):
                raise Refused(f"A volume named {name} already exists on the engine; nothing was changed.")
            save_fields(restore, volume_create_requested=True)
            ev = engine.create_volume(name=name, driver=restore.driver, options=restore.options,
                                      labels=restore.labels)
            # The engine has the options now: keep only a scrubbed copy (the page, the recovery).
            save_fields(restore, volume_created_at=ev.created_at.isoformat() if ev.created_at else "",
                        options=scrubbed(restore.options))
            try:
                save_fields(restore, phase="writing")
                write()
                save_fields(restore, written_at=timezone.now(), outcome=outcome)
            except BaseException as exc:
                save_fields(restore, phase="removing")
                removed, why = remove_own_volume(restore)
                if removed:
                    save_fields(restore, outcome=f"The restore failed; the half-filled volume {name} was removed.")
                else:
                    save_fields(restore, partial=True,
                                outcome=f"The restore failed and the half-filled volume {name} could not be removed "
                                        f"({why}): it is marked partial; remove it from this page.")
                    mirror_sync_quietly()  # the mirror learns of the volume before it is marked
                    volume_error_record(name=name, error=f"Partial restore #{restore.pk}: {why}")
                if isinstance(exc, CargoholdError):
                    raise type(exc)(f"{exc} {restore.outcome}") from exc
                raise
            finally:
                mirror_sync_quietly()


def remove_own_volume(restore: Restore, *, attempts: int = 10) -> tuple[bool, str]:
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
    """A normal backup (listed, origin "safety") of the volume as it is now, with its own
    job run here as a child of the restore's: the backups app's `backup_write` streams and
    verifies it under the volume lock this restore holds."""
    volume = Volume.objects.filter(name=restore.volume_name).first()
    parent = ctx.job
    with transaction.atomic():
        job = job_create(kind=KIND_BACKUP, target=restore.volume_name,
                         params={"origin": Backup.Origin.SAFETY, "restore": restore.pk, "parent_job": parent.pk,
                                 "requested_by": parent.params.get("requested_by", "")},
                         user=parent.created_by, trigger=parent.trigger,
                         progress_total=volume.size_bytes if volume else None, enqueue=False)
        safety = Backup.objects.create(
            job=job, volume=volume, volume_name=restore.volume_name, origin=Backup.Origin.SAFETY,
            compression=Backup.Compression.ZSTD, stop_containers=False,
            bytes_expected=volume.size_bytes if volume else None,
        )
    save_fields(restore, safety_backup=safety, phase="safety_backup")
    audit_record(action="backup_start", actor=parent.created_by, object_type="volume",
                 object_name=restore.volume_name,
                 params={"backup": safety.pk, "job": job.pk, "origin": "safety", "restore": restore.pk})
    try:
        ctx.step(f"Safety backup #{safety.pk} of {restore.volume_name}", number=2, of=3)
        with job_inline(job, parent=ctx) as sub:
            backup_write(sub, safety)
    except CargoholdError as exc:
        raise CargoholdError(f"The safety backup failed, so the volume was not changed: {exc}") from exc
    safety.refresh_from_db()
    if safety.status != Backup.Status.SUCCEEDED:
        raise CargoholdError(f"The safety backup {safety.status}, so the volume was not changed: {safety.error}")
    return safety


def _restore_in_place(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    storage = backup_storage(backup)
    name = restore.volume_name

    def check():
        # Checked while the containers still run: a bad archive costs no downtime.
        sha, result = _check_phase(ctx, restore, backup, storage, untouched="The volume was not touched.", of=3)

        def write():
            _write_phase(ctx, restore, key=backup.key, compression=backup.compression, sha=sha,
                         layout=result.layout, total=result.stats.tar_bytes,
                         message=f"Writing {result.stats.file_count} files into {name}", of=3, storage=storage)
        return write

    def empty():
        ctx.step(f"Emptying volume {name}", number=3, of=3)
        archive_io.empty_volume(volume_name=name, job_id=ctx.job.pk)

    restore_in_place_steps(
        ctx, restore, backup, check=check, empty=empty,
        outcome=lambda safety: (f"Volume {name} now holds the content of backup {restore.backup_label}; "
                                f"its previous content is in safety backup #{safety.pk}."))


def restore_in_place_steps(ctx: JobContext, restore: Restore, backup: Backup, *, check, empty, outcome) -> None:
    """The steps of every restore in place, whatever writes the content (a whole archive,
    some of its paths, a restic snapshot): the volume's and the backup's locks; `check()`
    while nothing has changed yet (it returns the function that writes); the containers
    stopped; the safety backup; the engine's mount events watched; `empty()` if given
    (a whole restore empties the volume; a partial one replaces only its paths, inside
    its writer); the write; nobody else on the volume meanwhile; on any failure the
    safety backup put back (containers kept stopped while it is not). `outcome(safety)`
    is the success text."""
    name = restore.volume_name
    with ctx.lock(volume_lock(name), wait_seconds=lock_wait_seconds()):
        with ctx.lock(backup_lock(backup.pk), wait_seconds=lock_wait_seconds()):
            try:
                engine.inspect_volume(name)
            except engine.NotFound:
                raise Refused(f"The volume {name} no longer exists on the engine; nothing was restored.") from None
            write = check()
            save_fields(restore, phase="stopping")
            kept_stopped: list = []
            try:
                with containers_stopped(ctx, restore), engine.watch_mounts(name) as watch:
                    safety = _take_safety_backup(ctx, restore)
                    if intruders := _intruders(watch, restore):
                        raise VolumeHeld(f"The {containers_text(intruders)} started while the safety backup was "
                                         f"taken; the volume {name} was not changed.")
                    # Written before the first change: from here on a crash means "put the safety backup back".
                    save_fields(restore, rollback_pending=True, phase="emptying" if empty else "writing")
                    try:
                        if empty:
                            empty()
                            save_fields(restore, emptied_at=timezone.now(), phase="writing")
                        write()
                        # The last step before success: nobody else touched the volume meanwhile.
                        ctx.say(f"Checking that no other container used {name} during the restore")
                        if intruders := _intruders(watch, restore):
                            raise VolumeHeld(f"The {containers_text(intruders)} started while the restore wrote "
                                             f"into {name}, so the restore failed.")
                        save_fields(restore, written_at=timezone.now(), rollback_pending=False, phase="starting",
                                    outcome=outcome(safety))
                    except BaseException as exc:
                        intruders_stopped = _stop_intruders(ctx, restore)
                        if not roll_back(ctx, restore, safety):
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
                    save_fields(restore, stopped_containers=kept_stopped, restart_pending=True,
                                restart_error="Not started again: the volume's previous content is not back yet.")
            if restore.restart_error:
                save_fields(restore, outcome=f"{restore.outcome} {restore.restart_error}")
    mirror_sync_quietly()


# --- someone else on the volume (in place) ----------------------------------------------------


class VolumeHeld(CargoholdError):
    """Someone else used the volume while a restore in place held it."""


def _intruders(watch: engine.MountWatch, restore: Restore) -> list[dict]:
    """Containers that used the volume while this restore held it: every mount the engine
    reported since the containers were stopped (so also one started and removed again
    meanwhile), and whatever runs with it mounted now. Cargohold cannot stop someone with
    the Docker socket from starting a container; it can notice and not report success."""
    found = {c["id"]: c for c in running_users(restore)}
    for m in watch.mounts():
        if not is_own_helper(m.labels, restore):
            found.setdefault(m.container_id, {"id": m.container_id, "name": m.container_name or m.container_id[:12]})
    return sorted(found.values(), key=lambda c: c["name"])


def _stop_intruders(ctx: JobContext, restore: Restore) -> list[dict]:
    """Stop what someone started on the volume during the restore before its previous
    content goes back: emptying a volume under a running program would wreck both. Each
    is recorded beside the restore's own stopped containers first, so the recovery starts
    it again should this worker die; one that cannot be stopped makes roll_back refuse."""
    try:
        running = running_users(restore)
    except engine.EngineError:
        return []  # the engine is not answering: roll_back's own check reports it
    stopped = []
    for c in running:
        save_fields(restore, stopped_containers=[*restore.stopped_containers, c], restart_pending=True)
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
    errors = start_again(intruders, say=ctx.say)
    own = [c for c in restore.stopped_containers if c not in intruders]
    save_fields(restore, restart_pending=bool(errors or own), restart_error="; ".join(errors),
                outcome=f"{restore.outcome} The {containers_text(intruders)} stopped for that and "
                        + ("; ".join(errors) + "." if errors else "started again."))


# --- removing a partial volume (the button) ---------------------------------------------------


def partial_volume_remove_perform(ctx: JobContext) -> dict:
    """Remove the half-filled volume of a failed restore: only if it is still the volume
    that restore created (same creation time) and no container uses it."""
    restore = Restore.objects.filter(pk=ctx.job.params.get("restore")).first()
    if restore is None or not restore.partial:
        return {"message": "Nothing to remove (already done)."}
    name = restore.volume_name
    with ctx.lock(volume_lock(name), wait_seconds=lock_wait_seconds()):
        users = [c.name for c in engine.containers_using(name) if engine.HELPER_LABEL not in c.labels]
        if users:
            raise Refused(f"The volume {name} is used by {', '.join(users)}: it is not removed.")
        engine.remove_job_helpers(job_id=restore.job_id)
        removed, why = remove_own_volume(restore, attempts=3)
        if not removed:
            raise CargoholdError(f"The partial volume {name} was not removed: {why}.")
    save_fields(restore, partial=False, partial_removed_at=timezone.now(),
                outcome=f"The half-filled volume {name} was removed.")
    volume_error_clear(name=name)
    mirror_sync_quietly()
    audit_record(action="restore_remove_partial", actor=ctx.job.created_by, object_type="volume", object_name=name,
                 params={"restore": restore.pk})
    return {"message": restore.outcome}
