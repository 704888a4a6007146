"""Writers of the mirror, and the lifecycle's front door.

(Over 450 lines: the mirror sync and its passes, which lock the host and write in one
transaction, belong together; the lifecycle's *_start functions below are the next piece
to move out, to a volumes/lifecycle.py.)

The mirror's writers (mirror_sync, sizes_refresh) call the engine: worker side only
(tasks, the event watcher, management commands). The lifecycle's *_start functions are
the web side: they check what the mirror already rules out and write a job row; the
worker performs the job (volumes.worker).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from project.errors import Refused
from project.redact import scrubbed, scrubbed_text
from volumes import engine
from hosts import refs
from hosts.models import Host
from volumes.models import PROTECT_LABEL, Container, EngineStatus, Mount, Volume

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
    # Before listing: a row that a later sync (or a service) saw after this moment is not
    # marked gone by this one, which may write after it with an older listing (the event
    # watcher's sync and a job's overlap).
    listed_at = timezone.now()
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
    host = _this_host()
    with transaction.atomic():
        # One sync of a host at a time, each reading what the one before wrote: on
        # PostgreSQL two (the event watcher's and a job's) would both find a new volume
        # missing and both insert it. (SQLite's IMMEDIATE transactions serialize them.)
        Host.objects.select_for_update().get(pk=host.pk)
        _sync_volumes(engine_volumes, now, result, listed_at=listed_at, host=host)
        _sync_containers(engine_containers, now, result, listed_at=listed_at, host=host)
        _sync_mounts(engine_containers, result, host=host)
        _update_container_counts(host)
        _update_last_mounts(host)
        if result.changed:
            # Which team owns which volume follows labels and mounts: kept in this
            # transaction, so it moves exactly when this sync commits (accounts.ownership).
            from accounts.ownership import ownership_refresh

            ownership_refresh(host=host)
        status = EngineStatus.get(host.name)
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


def _this_host() -> Host:
    """The host this worker serves: every sync and size refresh touches its rows only."""
    return Host.objects.get_or_create(name=refs.worker_host_name())[0]


def _unseen_since(row, listed_at) -> bool:
    return row.gone_since is None and (row.last_seen_at is None or row.last_seen_at < listed_at)


def _sync_volumes(engine_volumes, now, result: SyncResult, *, listed_at, host: Host) -> None:
    existing = {v.name: v for v in Volume.objects.filter(host=host)}
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
                Volume(name=ev.name, host=host, last_seen_at=now, search_text=_search_text(ev.name, ev.labels), **values)
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
    gone = [name for name, row in existing.items() if name not in seen and _unseen_since(row, listed_at)]
    if gone:
        Volume.objects.filter(host=host, name__in=gone).update(gone_since=now, container_count=0)
    result.volumes_added += len(to_create)
    result.volumes_updated += len(to_update)
    result.volumes_gone += len(gone)


def _sync_containers(engine_containers, now, result: SyncResult, *, listed_at, host: Host) -> None:
    existing = {c.engine_id: c for c in Container.objects.filter(host=host)}
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
            to_create.append(Container(engine_id=ec.id, host=host, last_seen_at=now, **values))
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
    gone = [cid for cid, row in existing.items() if cid not in seen and _unseen_since(row, listed_at)]
    if gone:
        Container.objects.filter(host=host, engine_id__in=gone).update(gone_since=now, state="removed")
        Mount.objects.filter(container__host=host, container__engine_id__in=gone).delete()
    result.containers_added += len(to_create)
    result.containers_gone += len(gone)


def _sync_mounts(engine_containers, result: SyncResult, *, host: Host) -> None:
    containers = {
        engine_id: (pk, tmpfs or {})
        for engine_id, pk, tmpfs in Container.objects.present().filter(host=host).values_list("engine_id", "pk", "host_tmpfs")
    }
    volume_pk = dict(Volume.objects.present().filter(host=host).values_list("name", "pk"))
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
    for mount in Mount.objects.filter(container__gone_since__isnull=True, container__host=host):
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


def _update_container_counts(host: Host) -> None:
    counts = dict(
        Volume.objects.present().filter(host=host)
        .annotate(n=Count("mounts__container", filter=Q(mounts__container__gone_since__isnull=True), distinct=True))
        .values_list("pk", "n")
    )
    current = dict(Volume.objects.present().filter(host=host).values_list("pk", "container_count"))
    changed = [Volume(pk=pk, container_count=n) for pk, n in counts.items() if current.get(pk) != n]
    Volume.objects.bulk_update(changed, ["container_count"], batch_size=500)


def _update_last_mounts(host: Host) -> None:
    """Who mounts each volume where (first container by name), kept after they are gone."""
    first: dict[int, dict] = {}
    for vpk, container, destination in (
        Mount.objects.filter(volume__isnull=False, container__gone_since__isnull=True, container__host=host)
        .order_by("container__name", "destination").values_list("volume_id", "container__name", "destination")
    ):
        first.setdefault(vpk, {"container": container, "destination": destination})
    current = dict(Volume.objects.filter(pk__in=list(first)).values_list("pk", "last_mount"))
    changed = [Volume(pk=pk, last_mount=m) for pk, m in first.items() if current.get(pk) != m]
    Volume.objects.bulk_update(changed, ["last_mount"], batch_size=500)


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
    host = _this_host()
    with transaction.atomic():
        # After any sync of this host, as a sync takes its locks (host row, volumes, status):
        # on PostgreSQL the other order deadlocks with one.
        Host.objects.select_for_update().get(pk=host.pk)
        volumes = list(Volume.objects.filter(host=host, name__in=list(usage.volume_sizes)))
        for v in volumes:
            v.size_bytes = usage.volume_sizes[v.name]
            v.size_measured_at = now
        Volume.objects.bulk_update(volumes, ["size_bytes", "size_measured_at"], batch_size=500)
        containers = list(Container.objects.filter(host=host, engine_id__in=list(usage.container_sizes)))
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
    return not EngineStatus.objects.filter(host__name=refs.worker_host_name(), sizes_measured_at__isnull=False).exists()


def mirror_sync_quietly() -> SyncResult | None:
    """After a change Cargohold made: refresh the mirror, but never fail the job for it."""
    try:
        return mirror_sync()
    except Exception:
        logger.exception("mirror sync after a change failed")
        return None


# --- lifecycle: create, remove, prune (the web side's front door) -------------------
#
# Pages and management commands call the *_start functions (they only write a job row);
# the worker performs them (volumes.worker), asking the engine again (the mirror may be
# seconds behind); each job's end is audited by its kind's on_end.

KIND_CREATE = "volume_create"
KIND_REMOVE = "volume_remove"
KIND_PRUNE = "volume_prune"
LIFECYCLE_KINDS = (KIND_CREATE, KIND_REMOVE, KIND_PRUNE)


def protected_message(name: str) -> str:
    return (
        f"Volume {name} is protected (label {PROTECT_LABEL}=true): Cargohold never removes or prunes it. "
        "Use `docker volume rm` on the host if you really mean it."
    )


def users_text(users: list[tuple[str, str]]) -> str:
    """'a (running), b (exited)' from (name, state) pairs."""
    return ", ".join(f"{name} ({state})" for name, state in users)


def in_use_message(name: str, users: list[tuple[str, str]]) -> str:
    return (
        f"Volume {name} is used by {len(users)} container{'s' if len(users) != 1 else ''}: {users_text(users)}. "
        "Remove those containers first (stopped containers count, as in Docker)."
    )


def _requested_by(user, requested_by: str) -> str:
    from accounts.services import actor_name

    return actor_name(user, requested_by)


def volume_create_start(
    *, name: str, driver: str, options: dict, labels: dict, check_mount: bool = True,
    user=None, trigger: str = "user", requested_by: str = "", host: str = "",
):
    """Queue the creation of a volume (name "" lets the engine generate one).

    The caller validated the input (VolumeCreateForm); the rules only the engine can
    answer (does the name exist there, is the driver installed) run in the worker.
    """
    from jobs.services import job_create
    from volumes.forms import validate_volume_name

    if name and (problem := validate_volume_name(name)):
        raise Refused(problem)
    host = host or refs.default_host_name()
    ref = refs.make_ref(host, name) if name else ""
    return job_create(
        kind=KIND_CREATE, target=ref or "(generated name)", user=user, trigger=trigger, host=host,
        params={
            "name": ref, "driver": driver, "options": dict(options), "labels": dict(labels),
            "check_mount": bool(check_mount), "requested_by": _requested_by(user, requested_by),
        },
    )


def volume_remove_start(*, volume: Volume, user=None, trigger: str = "user", requested_by: str = ""):
    """Queue the removal of a volume, refusing at once what the mirror already rules out."""
    from jobs.services import job_create
    from volumes import selectors

    problem = ""
    users = [(c.name, c.state) for c in selectors.volume_users(volume=volume)]
    if volume.is_gone:
        problem = f"Volume {volume.name} is no longer on the engine; there is nothing to remove."
    elif volume.is_protected:
        problem = protected_message(volume.name)
    elif users:
        problem = in_use_message(volume.name, users)
    if problem:
        from accounts.services import audit_record

        audit_record(
            action="volume_remove", actor=user, actor_name=requested_by, object_type="volume",
            object_name=volume.name, params={"trigger": trigger}, result="error", error=problem,
        )
        raise Refused(problem)
    return job_create(
        kind=KIND_REMOVE, target=volume.name, user=user, trigger=trigger,
        params={"requested_by": _requested_by(user, requested_by)},
    )


def volume_prune_start(
    *, names: list[str], include_named: bool, user=None, trigger: str = "user", requested_by: str = ""
):
    """Queue the removal of exactly `names` (the list the user confirmed)."""
    from jobs.services import job_create

    if not names:
        raise Refused("There is nothing to prune.")
    hosts = {refs.host_of(n) for n in names}
    if len(hosts) > 1:
        raise Refused("A prune removes the volumes of one host at a time: filter the list by host first.")
    return job_create(
        host=hosts.pop(),
        kind=KIND_PRUNE, target=f"{len(names)} volume{'s' if len(names) != 1 else ''}",
        target_type="volumes", user=user, trigger=trigger, progress_total=len(names),
        params={"names": list(names), "include_named": bool(include_named),
                "requested_by": _requested_by(user, requested_by)},
    )


def volume_error_record(*, name: str, error: str) -> None:
    """Keep the engine's message about a volume for its page (an NFS server not answering)."""
    Volume.objects.filter(name=name).update(last_error=scrubbed_text(error)[:4000])


def volume_error_clear(*, name: str) -> None:
    Volume.objects.filter(name=name).exclude(last_error="").update(last_error="")
