"""Putting a volume's previous content back from its restore's safety back-up (worker side).

After a failed write (restores.worker), by the put-back button (`restore_rollback_perform`)
and after a dead worker (restores.recovery), always under the volume's lock. Never
under a running program: the containers that use the volume are named and left alone.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.services import audit_record
from backups.consistency import start_again
from backups.models import Backup
from backups.services import lock_wait_seconds
from backups.storage import backup_storage
from jobs.locks import volume_lock
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import CargoholdError
from restores import archive_io
from restores.models import Restore
from tarstream import Layout
from volumes import engine


def own_job_ids(restore: Restore) -> set[str]:
    """The jobs whose helper containers are this restore's: its own and its safety backup's."""
    ids = {str(restore.job_id)}
    if restore.safety_backup_id:
        ids.add(str(restore.safety_backup.job_id))
    return ids


def is_own_helper(labels: dict, restore: Restore) -> bool:
    # This restore's helpers carry its jobs' ids; any other container mounting the volume is someone else's.
    return engine.is_helper_of(labels, own_job_ids(restore))


def containers_text(containers: list[dict]) -> str:
    """'container shop-db (abc123def456) was' / 'containers a (...), b (...) were'."""
    names = ", ".join(f"{c['name']} ({c['id'][:12]})" for c in containers)
    return f"container {names} was" if len(containers) == 1 else f"containers {names} were"


def running_users(restore: Restore) -> list[dict]:
    """Containers other than this restore's helpers that have its volume mounted and run."""
    return sorted(({"id": c.id, "name": c.name}
                   for c in engine.containers_using(restore.volume_name, running_only=True)
                   if not is_own_helper(c.labels, restore)), key=lambda c: c["name"])



# --- putting the previous content back (after a failed write, the button, the recovery) -------


def roll_back(ctx: JobContext | None, restore: Restore, safety: Backup | None) -> bool:
    """Put the safety backup back into the volume; the caller holds the volume's lock.

    Records the outcome on the row; returns True when the volume holds its previous
    content again. Not cancellable: a half-restored volume is worse than waiting.
    """
    name = restore.volume_name
    save_fields(restore, phase="rolling_back")
    try:
        engine.inspect_volume(name)
    except engine.NotFound:
        # Removed meanwhile (by a person): there is nothing left to put anything back into.
        save_fields(restore, rollback_pending=False, rollback_error=f"The volume {name} no longer exists.",
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
        if users := running_users(restore):
            raise CargoholdError(f"the {containers_text(users)} running with the volume mounted; stop "
                                 f"{'it' if len(users) == 1 else 'them'} first")
        if ctx is not None:
            ctx.say(f"Putting the previous content of {name} back from safety backup #{safety.pk}")
        archive_io.empty_volume(volume_name=name, job_id=restore.job_id)

        def on_bytes(n: int) -> None:
            if ctx is not None:
                ctx.done += n

        if ctx is not None:
            ctx.set_progress(0, safety.bytes_read or None,
                             f"Putting the previous content back from safety backup #{safety.pk}")
        archive_io.write_archive(volume_name=name, key=safety.key, compression=safety.compression,
                                 layout=Layout.DATA, allow_devices=True, sha256=safety.sha256,
                                 job_id=restore.job_id, on_bytes=on_bytes, storage=backup_storage(safety))
    except Exception as exc:
        held = f"safety backup #{safety.pk}" if safety is not None else "no safety backup"
        save_fields(restore, rollback_error=str(exc),
                    outcome=f"Putting the volume's previous content back failed too ({exc}); it is in {held}. "
                            "Cargohold's recovery retries; restore that backup in place if it keeps failing.")
        audit_record(action="restore_rollback", object_type="volume", object_name=name,
                     params={"restore": restore.pk, "safety_backup": restore.safety_backup_id},
                     result="error", error=str(exc))
        return False
    save_fields(restore, rollback_pending=False, rolled_back_at=timezone.now(), rollback_error="",
                outcome=f"The volume's previous content was put back from safety backup #{safety.pk}.")
    audit_record(action="restore_rollback", object_type="volume", object_name=name,
                 params={"restore": restore.pk, "safety_backup": safety.pk})
    return True


def restart_stopped(restore: Restore) -> None:
    """Start the containers a restore kept stopped (once its volume is whole again)."""
    if not restore.restart_pending:
        return
    errors = start_again(restore.stopped_containers)
    save_fields(restore, restart_pending=bool(errors), restart_error="; ".join(errors))
    if not errors:
        audit_record(action="restore_restart_containers", object_type="volume", object_name=restore.volume_name,
                     params={"restore": restore.pk,
                             "containers": [c.get("name") for c in restore.stopped_containers]})


def rollback_lock_ttl() -> timedelta:
    # Long enough for putting a large volume back; released as soon as it is done.
    return timedelta(seconds=max(settings.LOCK_TTL_SECONDS, 6 * 3600))


def restore_rollback_perform(ctx: JobContext) -> dict:
    """The put-back button: what the recovery does, as a job of its own."""
    restore = Restore.objects.select_related("safety_backup").filter(pk=ctx.job.params.get("restore")).first()
    if restore is None or not restore.rollback_pending:
        return {"message": "Nothing to put back (already done)."}
    with ctx.lock(volume_lock(restore.volume_name), wait_seconds=lock_wait_seconds()):
        restore.refresh_from_db()
        if not restore.rollback_pending:
            return {"message": "Nothing to put back (already done)."}
        if not roll_back(ctx, restore, restore.safety_backup):
            raise CargoholdError(restore.outcome)
        restart_stopped(restore)
    return {"message": restore.outcome}
