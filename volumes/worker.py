"""The worker side of the volume lifecycle: perform create, remove and prune, and audit
each job's end (its kind's on_end, whatever ended it: done, refused, failed, cancelled
while queued, a dead worker). Each perform asks the engine again (the mirror may be
seconds behind), acts, and refreshes the mirror. Kinds registered by volumes.apps."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from accounts.services import audit_record
from jobs import kinds
from jobs.locks import volume_lock
from jobs.models import Job
from project.errors import Refused
from project.redact import scrubbed
from project.sizes import human_size
from volumes import engine
from volumes.models import PROTECT_LABEL, Volume, labels_protected
from volumes.services import (
    KIND_CREATE, KIND_PRUNE, KIND_REMOVE, in_use_message, mirror_sync_quietly, protected_message, users_text,
    volume_error_clear, volume_error_record,
)

logger = logging.getLogger(__name__)


def engine_users(name: str) -> list[tuple[str, str]]:
    """(label, state) of every container on the engine that mounts `name`, our helpers
    named as such: what a refusal to remove the volume names."""
    return [
        (f"Cargohold helper of job {c.labels.get('cargohold.job') or '?'}" if engine.HELPER_LABEL in c.labels
         else c.name, c.state)
        for c in engine.containers_using(name)
    ]


def _mount_check(name: str, *, job_id: int) -> str:
    """Mount the volume once in a helper container; the engine's message if that fails."""
    try:
        engine.run_helper(name, ["true"], timeout=60, purpose="mount-check", job_id=job_id)
    except engine.EngineError as exc:
        logger.warning("volume %s could not be mounted: %s", name, exc)
        volume_error_record(name=name, error=str(exc))
        return str(exc)
    volume_error_clear(name=name)
    return ""


def volume_create_perform(ctx) -> dict:
    """Worker side of volume_create_start: check the engine, create, mirror.

    Refused (nothing created) when the name exists on the engine or the driver is not
    installed. With check_mount, the new volume is mounted once in a helper container so
    that a driver that cannot mount it (NFS server down) says so now: the volume stays
    (Docker created it) and its page shows the engine's message.
    """
    job = ctx.job
    params = job.params
    name, driver = params.get("name") or "", params.get("driver") or "local"
    options, labels = params.get("options") or {}, params.get("labels") or {}
    _forget_secrets(job)  # read once into memory: the row keeps only a scrubbed copy from now on
    ctx.check_cancelled()
    with ctx.lock(volume_lock(name), wait_seconds=10) if name else nullcontext():
        if name and engine.volume_exists(name):
            raise Refused(f"A volume named {name} already exists on the engine; nothing was created.")
        plugins = engine.info().volume_plugins
        if driver not in plugins:
            raise Refused(
                f"The engine has no volume driver named {driver!r} "
                f"(installed: {', '.join(plugins) or 'none'}); nothing was created."
            )
        ctx.say("Creating the volume")
        created = engine.create_volume(name=name or None, driver=driver, options=options, labels=labels)
        Job.objects.filter(pk=job.pk).update(target=created.name)
        ctx.result["name"] = created.name  # for on_end's audit, should the mount check fail the job
        mirror_sync_quietly()
        problem = ""
        if params.get("check_mount"):
            ctx.say("Mounting it once to check it")
            problem = _mount_check(created.name, job_id=job.pk)
    message = f"Created volume {created.name}."
    if problem:
        message += f" But the engine could not mount it: {problem}"
    return {"name": created.name, "mount_error": problem, "message": message}


def volume_remove_perform(ctx) -> dict:
    """Worker side of volume_remove_start: the engine decides, the mirror follows.

    Refused when the engine says the volume is gone, protected, or used by any
    container (stopped ones count). Plain remove, never forced. The mirror row is
    marked gone by the sync, never deleted: backups keep their owner.
    """
    name = ctx.job.target
    ctx.check_cancelled()
    with ctx.lock(volume_lock(name), wait_seconds=10):
        try:
            current = engine.inspect_volume(name)
        except engine.NotFound:
            mirror_sync_quietly()
            raise Refused(f"Volume {name} is no longer on the engine (removed outside Cargohold?).") from None
        if labels_protected(current.labels):
            raise Refused(protected_message(name))
        users = engine_users(name)
        if users:
            raise Refused(in_use_message(name, users))
        ctx.say("Removing the volume")
        try:
            engine.remove_volume(name)
        except engine.Conflict as exc:
            users = engine_users(name)
            raise Refused(in_use_message(name, users) if users else str(exc)) from exc
        except engine.NotFound:
            raise Refused(f"Volume {name} disappeared from the engine before Cargohold removed it.") from None
        except engine.EngineUnavailable:
            raise
        except engine.EngineError as exc:
            volume_error_record(name=name, error=str(exc))
            raise
    mirror_sync_quietly()
    return {"name": name, "message": f"Removed volume {name}. Its record and backups are kept."}


def _prune_one(ctx, name: str, users: dict[str, list[tuple[str, str]]]) -> str:
    """Remove one volume of a prune; "" when removed, else why it was skipped."""
    try:
        lock = ctx.lock(volume_lock(name))
        lock.__enter__()
    except Refused as exc:  # another job (a backup) holds the volume
        return str(exc)
    try:
        try:
            current = engine.inspect_volume(name)
        except engine.NotFound:
            return "already gone from the engine"
        if labels_protected(current.labels):
            return f"protected ({PROTECT_LABEL}=true)"
        if users.get(name):
            return f"in use by {users_text(users[name])}"
        try:
            engine.remove_volume(name)
        except engine.Conflict as exc:
            now_users = engine_users(name)
            return f"in use by {users_text(now_users)}" if now_users else f"refused by the engine: {exc}"
        except engine.NotFound:
            return "already gone from the engine"
        except engine.EngineUnavailable:
            raise
        except engine.EngineError as exc:
            volume_error_record(name=name, error=str(exc))
            return f"engine error: {exc}"
        return ""
    finally:
        lock.__exit__(None, None, None)


def volume_prune_perform(ctx) -> dict:
    """Worker side of volume_prune_start: remove each confirmed volume the engine still allows.

    The list comes from the preview the user confirmed; each volume is checked against
    the engine right before its removal (gone, protected, used by a container: skipped
    with the reason) and removed without force, so the engine itself refuses a volume
    that a container started using since the check. Space reclaimed is the sum of the
    sizes last measured. A cancel stops between volumes; the result keeps what was done
    (`ctx.result` is written on the job row however it ends, and on_end audits from it).
    """
    job = ctx.job
    names = [n for n in job.params.get("names") or [] if isinstance(n, str)]
    sizes = dict(Volume.objects.filter(name__in=names).values_list("name", "size_bytes"))
    removed: list[dict] = []
    skipped: list[dict] = []
    totals = {"reclaimed_bytes": 0, "unmeasured": 0}
    ctx.set_total(len(names))

    def summary() -> dict:
        n, unmeasured = len(removed), totals["unmeasured"]
        message = (
            f"Removed {n} volume{'s' if n != 1 else ''}, skipped {len(skipped)}; "
            f"{human_size(totals['reclaimed_bytes'])} reclaimed"
            + (f" (+ {unmeasured} volume{'s' if unmeasured != 1 else ''} of unknown size)" if unmeasured else "")
            + "."
        )
        return {"removed": removed, "skipped": skipped, **totals, "message": message}

    try:
        # One listing gives the reasons; the plain remove below is the engine's own,
        # atomic check for anything that started using a volume since.
        users: dict[str, list[tuple[str, str]]] = {}
        for c in engine.list_containers():
            for m in c.mounts:
                if m.volume_name:
                    users.setdefault(m.volume_name, []).append((c.name, c.state))
        for name in names:
            ctx.check_cancelled()
            ctx.say(f"Checking and removing {name}")
            reason = _prune_one(ctx, name, users)
            if reason:
                skipped.append({"name": name, "reason": reason})
            else:
                size = sizes.get(name)
                removed.append({"name": name, "size_bytes": size})
                if size is None:
                    totals["unmeasured"] += 1
                else:
                    totals["reclaimed_bytes"] += size
                audit_record(
                    action="volume_remove", actor=job.created_by, actor_name=job.params.get("requested_by", ""),
                    object_type="volume", object_name=name, params={"via": "prune", "job": job.pk},
                )
            ctx.advance(1)
            ctx.result.update(summary())
    finally:
        if removed:
            mirror_sync_quietly()
    return summary()


# --- the end of a lifecycle job: forget the secrets, audit the outcome -------------------------


def _audit_params(job: Job) -> tuple[str, dict]:
    """The audit record's object name and params for the job, from its params and result."""
    params, result = job.params, job.result or {}
    base = {"job": job.pk, "trigger": job.trigger}
    if job.kind == KIND_CREATE:
        name = result.get("name") or params.get("name") or "(generated name)"
        extra = {"driver": params.get("driver") or "local", "options": params.get("options") or {},
                 "labels": params.get("labels") or {}, "generated_name": not params.get("name")}
        if params.get("check_mount") and "mount_error" in result:
            extra["mount_check"] = result["mount_error"] or "ok"
        return name, {**extra, **base}
    if job.kind == KIND_PRUNE:
        return job.target, {
            "include_named": bool(params.get("include_named")), "requested": len(params.get("names") or []),
            "removed": [r["name"] for r in result.get("removed", [])],
            # pairs, not a dict: the audit masks keys that look secret
            "skipped": [[s["name"], s["reason"]] for s in result.get("skipped", [])],
            "reclaimed": {"reclaimed_bytes": result.get("reclaimed_bytes", 0),
                          "unmeasured": result.get("unmeasured", 0)},
            **base,
        }
    return job.target, base


def _forget_secrets(job: Job) -> None:
    """A create's driver options may hold a password: keep only a scrubbed copy in the row."""
    job.params = scrubbed(job.params)
    Job.objects.filter(pk=job.pk).update(params=job.params)


def volume_lifecycle_on_end(job: Job) -> None:
    """Once per lifecycle job, however it ended: a create that never ran (cancelled while
    queued) forgets its secrets too; then audit the outcome (ok, or the job's error)."""
    if job.kind == KIND_CREATE:
        _forget_secrets(job)
    object_name, params = _audit_params(job)
    ok = job.status == Job.Status.SUCCEEDED
    audit_record(
        action=job.kind, actor=job.created_by, actor_name=job.params.get("requested_by", ""),
        object_type="volume", object_name=object_name, params=params,
        result="ok" if ok else "error", error="" if ok else (job.error or f"The job was {job.status}."),
    )


def register_kinds() -> None:
    from accounts import roles

    for name, label, perform, time_limit in (
        (KIND_CREATE, "create volume", volume_create_perform, 660),
        (KIND_REMOVE, "remove volume", volume_remove_perform, 660),
        (KIND_PRUNE, "prune volumes", volume_prune_perform, 3660),
    ):
        kinds.register(name, label, perform=perform, on_end=volume_lifecycle_on_end,
                       cancel_perm=roles.MANAGE_VOLUMES, time_limit=time_limit,
                       progress_unit="volumes" if name == KIND_PRUNE else "bytes")
