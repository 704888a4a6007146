"""Writers of the mirror. Worker-side only: these call the engine."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from volumes import engine
from volumes.models import PROTECT_LABEL, labels_protected
from project.errors import CargoholdError, Refused
from project.redact import scrubbed, scrubbed_text
from volumes.models import Container, EngineStatus, Mount, Volume

logger = logging.getLogger(__name__)

_VOLUME_FIELDS = ("driver", "mountpoint", "scope", "options", "labels", "status", "created_at", "anonymous")
_CONTAINER_FIELDS = (
    "name", "image", "state", "status", "labels", "compose_project", "compose_service", "created_at",
)


@dataclass
class SyncResult:
    volumes_added: int = 0
    volumes_updated: int = 0
    volumes_gone: int = 0
    containers_added: int = 0
    containers_updated: int = 0
    containers_gone: int = 0
    mounts_added: int = 0
    mounts_removed: int = 0
    duration_ms: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (self.volumes_added, self.volumes_updated, self.volumes_gone, self.containers_added,
             self.containers_updated, self.containers_gone, self.mounts_added, self.mounts_removed)
        )

    def __str__(self):
        return (
            f"volumes +{self.volumes_added} ~{self.volumes_updated} -{self.volumes_gone}, "
            f"containers +{self.containers_added} ~{self.containers_updated} -{self.containers_gone}, "
            f"mounts +{self.mounts_added} -{self.mounts_removed} in {self.duration_ms} ms"
        )


def _search_text(name: str, labels: dict) -> str:
    return " ".join([name.lower()] + [f"{k}={v}".lower() for k, v in labels.items()])


def _record_failure(exc: Exception) -> None:
    status = EngineStatus.get()
    status.last_attempt_at = timezone.now()
    status.last_error = str(exc)
    status.save(update_fields=["last_attempt_at", "last_error"])


def mirror_sync() -> SyncResult:
    """Reconcile the mirror with the engine: add, update, mark gone; never delete referenced rows.

    Reads the engine first (two list calls, no per-object inspect), then writes only
    the differences in one transaction, so a sync with nothing new writes nothing but
    the status row. Engine errors are recorded on EngineStatus and re-raised.
    """
    started = time.monotonic()
    try:
        engine_volumes = engine.list_volumes()
        # Our own short-lived helper containers are not part of the user's inventory.
        engine_containers = [c for c in engine.list_containers() if engine.HELPER_LABEL not in c.labels]
        engine_info = engine.info()
    except engine.EngineError as exc:
        _record_failure(exc)
        raise
    now = timezone.now()
    result = SyncResult()
    with transaction.atomic():
        _sync_volumes(engine_volumes, now, result)
        _sync_containers(engine_containers, now, result)
        _sync_mounts(engine_containers, result)
        _update_container_counts()
        status = EngineStatus.get()
        status.engine_id = engine_info.id
        status.host_name = engine_info.host_name
        status.server_version = engine_info.server_version
        status.api_version = engine_info.api_version
        status.storage_driver = engine_info.storage_driver
        status.docker_root_dir = engine_info.docker_root_dir
        status.volume_plugins = list(engine_info.volume_plugins)
        status.last_attempt_at = now
        status.last_success_at = now
        status.last_error = ""
        result.duration_ms = int((time.monotonic() - started) * 1000)
        status.last_sync_ms = result.duration_ms
        status.save()
    if result.changed:
        logger.info("mirror sync: %s", result)
    return result


def _sync_volumes(engine_volumes, now, result: SyncResult) -> None:
    existing = {v.name: v for v in Volume.objects.all()}
    seen = set()
    to_create, to_update = [], []
    for ev in engine_volumes:
        seen.add(ev.name)
        values = {
            "driver": ev.driver,
            "mountpoint": ev.mountpoint,
            "scope": ev.scope,
            # The mirror needs no CIFS password: backups read the options from the engine.
            "options": scrubbed(ev.options),
            "labels": ev.labels,
            "status": ev.status,
            "created_at": ev.created_at,
            "anonymous": ev.anonymous,
        }
        row = existing.get(ev.name)
        if row is None:
            to_create.append(
                Volume(name=ev.name, last_seen_at=now, search_text=_search_text(ev.name, ev.labels), **values)
            )
            continue
        changed = row.gone_since is not None or any(getattr(row, f) != values[f] for f in _VOLUME_FIELDS)
        if changed:
            for f, value in values.items():
                setattr(row, f, value)
            row.gone_since = None
            row.search_text = _search_text(ev.name, ev.labels)
            row.last_seen_at = now
            to_update.append(row)
    Volume.objects.bulk_create(to_create, batch_size=500)
    Volume.objects.bulk_update(
        to_update, [*_VOLUME_FIELDS, "gone_since", "search_text", "last_seen_at"], batch_size=500
    )
    gone = [name for name, row in existing.items() if name not in seen and row.gone_since is None]
    if gone:
        Volume.objects.filter(name__in=gone).update(gone_since=now, container_count=0)
    result.volumes_added += len(to_create)
    result.volumes_updated += len(to_update)
    result.volumes_gone += len(gone)


def _sync_containers(engine_containers, now, result: SyncResult) -> None:
    existing = {c.engine_id: c for c in Container.objects.all()}
    seen = set()
    to_create, to_update = [], []
    for ec in engine_containers:
        seen.add(ec.id)
        values = {
            "name": ec.name,
            "image": ec.image,
            "state": ec.state,
            "status": ec.status,
            "labels": ec.labels,
            "compose_project": ec.compose_project,
            "compose_service": ec.compose_service,
            "created_at": ec.created_at,
        }
        row = existing.get(ec.id)
        if row is None:
            to_create.append(Container(engine_id=ec.id, last_seen_at=now, **values))
            continue
        # "Up 5 minutes" changes every minute; only count it as a change with the state.
        changed = row.gone_since is not None or any(
            getattr(row, f) != values[f] for f in _CONTAINER_FIELDS if f != "status"
        )
        if changed or row.status != ec.status:
            for f, value in values.items():
                setattr(row, f, value)
            row.gone_since = None
            row.last_seen_at = now
            to_update.append(row)
            if changed:
                result.containers_updated += 1
    for row in to_create + [c for c in existing.values() if c.host_tmpfs is None and c.engine_id in seen]:
        try:
            row.host_tmpfs = engine.container_tmpfs(row.engine_id)
        except engine.NotFound:  # removed since the list call: the next sync marks it gone
            row.host_tmpfs = {}
        if row.pk and row not in to_update:
            to_update.append(row)
    Container.objects.bulk_create(to_create, batch_size=500)
    Container.objects.bulk_update(
        to_update, [*_CONTAINER_FIELDS, "host_tmpfs", "gone_since", "last_seen_at"], batch_size=500
    )
    gone = [cid for cid, row in existing.items() if cid not in seen and row.gone_since is None]
    if gone:
        Container.objects.filter(engine_id__in=gone).update(gone_since=now, state="removed")
        Mount.objects.filter(container__engine_id__in=gone).delete()
    result.containers_added += len(to_create)
    result.containers_gone += len(gone)


def _sync_mounts(engine_containers, result: SyncResult) -> None:
    containers = {
        engine_id: (pk, tmpfs or {})
        for engine_id, pk, tmpfs in Container.objects.present().values_list("engine_id", "pk", "host_tmpfs")
    }
    volume_pk = dict(Volume.objects.present().values_list("name", "pk"))
    wanted: dict[tuple, int | None] = {}
    for ec in engine_containers:
        if ec.id not in containers:
            continue
        cpk, tmpfs = containers[ec.id]
        for m in ec.mounts:
            key = (cpk, m.kind, m.source, m.destination, m.read_only)
            wanted[key] = volume_pk.get(m.volume_name) if m.volume_name else None
        for destination, opts in tmpfs.items():
            read_only = "ro" in [o.strip() for o in opts.split(",")]
            wanted[(cpk, "tmpfs", "", destination, read_only)] = None
    existing = {}
    stale_ids = []
    for mount in Mount.objects.filter(container__gone_since__isnull=True):
        if mount.key in wanted and mount.key not in existing and mount.volume_id == wanted[mount.key]:
            existing[mount.key] = mount
        else:
            stale_ids.append(mount.pk)
    if stale_ids:
        Mount.objects.filter(pk__in=stale_ids).delete()
    new = [
        Mount(container_id=key[0], kind=key[1], source=key[2], destination=key[3], read_only=key[4], volume_id=vpk)
        for key, vpk in wanted.items()
        if key not in existing
    ]
    Mount.objects.bulk_create(new, batch_size=500)
    result.mounts_added += len(new)
    result.mounts_removed += len(stale_ids)


def _update_container_counts() -> None:
    counts = dict(
        Volume.objects.present()
        .annotate(n=Count("mounts__container", filter=Q(mounts__container__gone_since__isnull=True), distinct=True))
        .values_list("pk", "n")
    )
    current = dict(Volume.objects.present().values_list("pk", "container_count"))
    changed = [Volume(pk=pk, container_count=n) for pk, n in counts.items() if current.get(pk) != n]
    Volume.objects.bulk_update(changed, ["container_count"], batch_size=500)


def sizes_refresh() -> int:
    """Store the engine's disk-usage figures for volumes and writable layers.

    Costly on big hosts (the engine walks every local volume), so it runs on its own,
    slower schedule (SIZE_REFRESH_SECONDS). Returns how many volumes got a size.
    """
    started = time.monotonic()
    try:
        usage = engine.disk_usage()
    except engine.EngineError as exc:
        status = EngineStatus.get()
        status.sizes_error = str(exc)
        status.save(update_fields=["sizes_error"])
        raise
    now = timezone.now()
    with transaction.atomic():
        volumes = list(Volume.objects.filter(name__in=list(usage.volume_sizes)))
        for v in volumes:
            v.size_bytes = usage.volume_sizes[v.name]
            v.size_measured_at = now
        Volume.objects.bulk_update(volumes, ["size_bytes", "size_measured_at"], batch_size=500)
        containers = list(Container.objects.filter(engine_id__in=list(usage.container_sizes)))
        for c in containers:
            c.size_rw = usage.container_sizes[c.engine_id]
            c.size_measured_at = now
        Container.objects.bulk_update(containers, ["size_rw", "size_measured_at"], batch_size=500)
        status = EngineStatus.get()
        status.sizes_measured_at = now
        status.sizes_ms = int((time.monotonic() - started) * 1000)
        status.sizes_error = ""
        status.save(update_fields=["sizes_measured_at", "sizes_ms", "sizes_error"])
    return len(volumes)


def sizes_never_measured() -> bool:
    return not EngineStatus.objects.filter(sizes_measured_at__isnull=False).exists()


def mirror_sync_quietly() -> SyncResult | None:
    """After a change Cargohold made: refresh the mirror, but never fail the job for it."""
    try:
        return mirror_sync()
    except Exception:
        logger.exception("mirror sync after a change failed")
        return None


# --- lifecycle: create, remove, prune ------------------------------------------------
#
# Pages and management commands call the *_start functions (they only write a job row);
# the worker runs the *_perform functions, which ask the engine again (the mirror may be
# seconds behind), act, refresh the mirror and write the audit record.

KIND_CREATE = "volume_create"
KIND_REMOVE = "volume_remove"
KIND_PRUNE = "volume_prune"
LIFECYCLE_KINDS = (KIND_CREATE, KIND_REMOVE, KIND_PRUNE)
_is_protected = labels_protected


def _protected_message(name: str) -> str:
    return (
        f"Volume {name} is protected (label {PROTECT_LABEL}=true): Cargohold never removes or prunes it. "
        "Use `docker volume rm` on the host if you really mean it."
    )


def _requested_by(user, requested_by: str) -> str:
    from accounts.services import actor_name

    return actor_name(user, requested_by)


def _users_text(users: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} ({state})" for name, state in users)


def _in_use_message(name: str, users: list[tuple[str, str]]) -> str:
    return (
        f"Volume {name} is used by {len(users)} container{'s' if len(users) != 1 else ''}: {_users_text(users)}. "
        "Remove those containers first (stopped containers count, as in Docker)."
    )


def volume_create_start(
    *, name: str, driver: str, options: dict, labels: dict, check_mount: bool = True,
    user=None, trigger: str = "user", requested_by: str = "",
):
    """Queue the creation of a volume (name "" lets the engine generate one).

    The caller validated the input (VolumeCreateForm); the rules only the engine can
    answer (does the name exist there, is the driver installed) run in the worker.
    """
    from jobs.services import job_create
    from volumes import tasks
    from volumes.forms import validate_volume_name

    if name and (problem := validate_volume_name(name)):
        raise Refused(problem)
    return job_create(
        kind=KIND_CREATE, task=tasks.create_volume, target=name or "(generated name)", user=user, trigger=trigger,
        params={
            "name": name, "driver": driver, "options": dict(options), "labels": dict(labels),
            "check_mount": bool(check_mount), "requested_by": _requested_by(user, requested_by),
        },
    )


def volume_remove_start(*, volume: Volume, user=None, trigger: str = "user", requested_by: str = ""):
    """Queue the removal of a volume, refusing at once what the mirror already rules out."""
    from jobs.services import job_create
    from volumes import selectors, tasks

    problem = ""
    users = [(c.name, c.state) for c in selectors.volume_users(volume=volume)]
    if volume.is_gone:
        problem = f"Volume {volume.name} is no longer on the engine; there is nothing to remove."
    elif volume.is_protected:
        problem = _protected_message(volume.name)
    elif users:
        problem = _in_use_message(volume.name, users)
    if problem:
        from accounts.services import audit_record

        audit_record(
            action="volume_remove", actor=user, actor_name=requested_by, object_type="volume",
            object_name=volume.name, params={"trigger": trigger}, result="error", error=problem,
        )
        raise Refused(problem)
    return job_create(
        kind=KIND_REMOVE, task=tasks.remove_volume, target=volume.name, user=user, trigger=trigger,
        params={"requested_by": _requested_by(user, requested_by)},
    )


def volume_prune_start(
    *, names: list[str], include_named: bool, user=None, trigger: str = "user", requested_by: str = ""
):
    """Queue the removal of exactly `names` (the list the user confirmed)."""
    from jobs.services import job_create
    from volumes import tasks

    if not names:
        raise Refused("There is nothing to prune.")
    return job_create(
        kind=KIND_PRUNE, task=tasks.prune_volumes, target=f"{len(names)} volume{'s' if len(names) != 1 else ''}",
        target_type="volumes", user=user, trigger=trigger, progress_total=len(names),
        params={"names": list(names), "include_named": bool(include_named),
                "requested_by": _requested_by(user, requested_by)},
    )


def volume_error_record(*, name: str, error: str) -> None:
    """Keep the engine's message about a volume for its page (an NFS server not answering)."""
    Volume.objects.filter(name=name).update(last_error=scrubbed_text(error)[:4000])


def volume_error_clear(*, name: str) -> None:
    Volume.objects.filter(name=name).exclude(last_error="").update(last_error="")


@contextmanager
def _audited(job, *, action: str, object_name: str, params: dict):
    """Write the outcome of a worker action to the audit trail: ok, or the error's text.

    Yields a dict whose "object_name" and "params" the action may complete on the way.
    """
    from accounts.services import audit_record
    from jobs.runner import JobCancelled

    entry = {"object_name": object_name, "params": {**params, "job": job.pk, "trigger": job.trigger}}

    def record(result: str, error: str = "") -> None:
        audit_record(
            action=action, actor=job.created_by, actor_name=job.params.get("requested_by", ""),
            object_type="volume", object_name=entry["object_name"], params=entry["params"],
            result=result, error=error,
        )

    try:
        yield entry
    except JobCancelled:
        record("error", "Cancelled by request.")
        raise
    except CargoholdError as exc:
        record("error", str(exc))
        raise
    except Exception as exc:
        record("error", f"Unexpected error: {type(exc).__name__}: {exc}")
        raise
    record("ok")


def _engine_users(name: str) -> list[tuple[str, str]]:
    """(container name, state) of every container on the engine that mounts `name`."""
    users = []
    for c in engine.list_containers():
        if any(m.volume_name == name for m in c.mounts):
            label = f"Cargohold helper of job {c.labels.get('cargohold.job') or '?'}" if engine.HELPER_LABEL in c.labels else c.name
            users.append((label, c.state))
    return sorted(users)


def _forget_secrets(job) -> None:
    """The worker has used the driver options: keep only a scrubbed copy in the job row."""
    from jobs.models import Job

    Job.objects.filter(pk=job.pk).update(params=scrubbed(job.params))


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


def volume_create_perform(*, ctx) -> dict:
    """Worker side of volume_create_start: check the engine, create, mirror, audit.

    Refused (nothing created) when the name exists on the engine or the driver is not
    installed. With check_mount, the new volume is mounted once in a helper container so
    that a driver that cannot mount it (NFS server down) says so now: the volume stays
    (Docker created it) and its page shows the engine's message.
    """
    job = ctx.job
    params = job.params
    name, driver = params.get("name") or "", params.get("driver") or "local"
    options, labels = params.get("options") or {}, params.get("labels") or {}
    audit_params = {"driver": driver, "options": options, "labels": labels, "generated_name": not name}
    try:
        with _audited(job, action="volume_create", object_name=name or "(generated name)", params=audit_params) as entry:
            ctx.check_cancelled()
            with ctx.lock(f"volume:{name}", wait_seconds=10) if name else nullcontext():
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
                entry["object_name"] = created.name
                from jobs.models import Job

                Job.objects.filter(pk=job.pk).update(target=created.name)
                mirror_sync_quietly()
                problem = ""
                if params.get("check_mount"):
                    ctx.say("Mounting it once to check it")
                    problem = _mount_check(created.name, job_id=job.pk)
                    entry["params"]["mount_check"] = problem or "ok"
    finally:
        _forget_secrets(job)
    message = f"Created volume {created.name}."
    if problem:
        message += f" But the engine could not mount it: {problem}"
    return {"name": created.name, "mount_error": problem, "message": message}


def volume_remove_perform(*, ctx) -> dict:
    """Worker side of volume_remove_start: the engine decides, the mirror follows.

    Refused when the engine says the volume is gone, protected, or used by any
    container (stopped ones count). Plain remove, never forced. The mirror row is
    marked gone by the sync, never deleted: backups keep their owner.
    """
    job = ctx.job
    name = job.target
    with _audited(job, action="volume_remove", object_name=name, params={}):
        ctx.check_cancelled()
        with ctx.lock(f"volume:{name}", wait_seconds=10):
            try:
                current = engine.inspect_volume(name)
            except engine.NotFound:
                mirror_sync_quietly()
                raise Refused(f"Volume {name} is no longer on the engine (removed outside Cargohold?).") from None
            if _is_protected(current.labels):
                raise Refused(_protected_message(name))
            users = _engine_users(name)
            if users:
                raise Refused(_in_use_message(name, users))
            ctx.say("Removing the volume")
            try:
                engine.remove_volume(name)
            except engine.Conflict as exc:
                users = _engine_users(name)
                raise Refused(_in_use_message(name, users) if users else str(exc)) from exc
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
        lock = ctx.lock(f"volume:{name}")
        lock.__enter__()
    except Refused as exc:  # another job (a backup) holds the volume
        return str(exc)
    try:
        try:
            current = engine.inspect_volume(name)
        except engine.NotFound:
            return "already gone from the engine"
        if _is_protected(current.labels):
            return f"protected ({PROTECT_LABEL}=true)"
        if users.get(name):
            return f"in use by {_users_text(users[name])}"
        try:
            engine.remove_volume(name)
        except engine.Conflict as exc:
            now_users = _engine_users(name)
            return f"in use by {_users_text(now_users)}" if now_users else f"refused by the engine: {exc}"
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


def volume_prune_perform(*, ctx) -> dict:
    """Worker side of volume_prune_start: remove each confirmed volume the engine still allows.

    The list comes from the preview the user confirmed; each volume is checked against
    the engine right before its removal (gone, protected, used by a container: skipped
    with the reason) and removed without force, so the engine itself refuses a volume
    that a container started using since the check. Space reclaimed is the sum of the
    sizes last measured. A cancel stops between volumes; the result keeps what was done.
    """
    from accounts.services import audit_record

    job = ctx.job
    names = [n for n in job.params.get("names") or [] if isinstance(n, str)]
    sizes = dict(Volume.objects.filter(name__in=names).values_list("name", "size_bytes"))
    removed: list[dict] = []
    skipped: list[dict] = []
    totals = {"reclaimed_bytes": 0, "unmeasured": 0}
    ctx.set_total(len(names))
    removed_names: list[str] = []
    skipped_reasons: list[list[str]] = []  # pairs, not a dict: the audit masks keys that look secret
    audit_params = {
        "include_named": bool(job.params.get("include_named")), "requested": len(names),
        "removed": removed_names, "skipped": skipped_reasons, "reclaimed": totals,
    }

    def summary() -> dict:
        n, unmeasured = len(removed), totals["unmeasured"]
        message = (
            f"Removed {n} volume{'s' if n != 1 else ''}, skipped {len(skipped)}; "
            f"{_size_text(totals['reclaimed_bytes'])} reclaimed"
            + (f" (+ {unmeasured} volume{'s' if unmeasured != 1 else ''} of unknown size)" if unmeasured else "")
            + "."
        )
        return {"removed": removed, "skipped": skipped, **totals, "message": message}

    try:
        with _audited(job, action="volume_prune", object_name=job.target, params=audit_params):
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
                    skipped_reasons.append([name, reason])
                else:
                    size = sizes.get(name)
                    removed.append({"name": name, "size_bytes": size})
                    removed_names.append(name)
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


def _size_text(n: int) -> str:
    from django.template.defaultfilters import filesizeformat

    return str(filesizeformat(n)).replace("\xa0", " ")
