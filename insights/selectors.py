"""Reads for the overview, graph, usage and risk pages: the database only.

Loading is here; the rules live in pure modules (`insights.graph`, `insights.risks`)
that take the plain records `mirror_rows` returns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, OuterRef, Subquery
from django.utils import timezone

from accounts import scoping
from insights import svg
from insights.graph import ContainerRow, Graph, MountRow, VolumeRow, graph_build, graph_layout
from insights.models import VolumeUsageSample
from drills.services import failed_last
from insights.risks import FindingGroup, RiskSettings, find_risks, merge_groups
from hosts.models import Host
from hosts.refs import host_of
from jobs.models import Job
from volumes.models import COMPOSE_PROJECT_LABEL, Container, EngineStatus, Mount, Volume, labels_protected, mount_hint


@dataclass
class MirrorRows:
    volumes: list[VolumeRow]
    containers: list[ContainerRow]
    mounts: list[MountRow]


def mirror_rows(*, who=None, host: str = "") -> MirrorRows:
    """Present volumes and containers and their mounts, as plain records (four queries).
    `who` (a request or user): their teams' (accounts.scoping); None: all. `host`: one
    host's ("" = every host)."""
    all_of = who is None
    on_host = {"host__name": host} if host else {}
    volumes = [
        VolumeRow(
            id=pk, name=name, anonymous=anonymous, size_bytes=size,
            project=str((labels or {}).get(COMPOSE_PROJECT_LABEL, "")),
            protected=labels_protected(labels), hint=mount_hint(last_mount, count) if anonymous else "",
            host=host_of(name),
        )
        for pk, name, anonymous, size, labels, last_mount, count
        in (Volume.objects if all_of else scoping.visible_volumes(who)).present().filter(**on_host)
        .order_by()
        .values_list("pk", "name", "anonymous", "size_bytes", "labels", "last_mount", "container_count")
    ]
    host_names = dict(Host.objects.values_list("pk", "name"))  # a handful of rows: no join per container
    containers = [
        ContainerRow(id=pk, name=name, state=state, project=project, service=service, image=image, size_rw=size_rw,
                     host=host_names.get(host_id, ""))
        for pk, name, state, project, service, image, size_rw, host_id
        in (Container.objects if all_of else scoping.visible_containers(who)).present().filter(**on_host)
        .order_by()
        .values_list("pk", "name", "state", "compose_project", "compose_service", "image", "size_rw", "host_id")
    ]
    mounts = [
        MountRow(container_id=cid, kind=kind, destination=dest, read_only=ro, volume_id=vid, source=source)
        for cid, kind, dest, ro, vid, source
        in (Mount.objects if all_of else scoping.visible_mounts(who)).filter(container__gone_since__isnull=True)
        .filter(**({"container__host__name": host} if host else {}))
        .order_by()
        .values_list("container_id", "kind", "destination", "read_only", "volume_id", "source")
    ]
    return MirrorRows(volumes=volumes, containers=containers, mounts=mounts)


def mirror_version() -> str:
    """A cheap fingerprint of what the graph shows: polls skip rendering when it is unchanged."""
    parts = (
        Volume.objects.aggregate(n=Count("id"), seen=Max("last_seen_at"), gone=Count("gone_since")),
        Container.objects.aggregate(n=Count("id"), seen=Max("last_seen_at"), gone=Count("gone_since")),
        Mount.objects.aggregate(n=Count("id"), top=Max("id")),
        EngineStatus.objects.filter(host__name=settings.DEFAULT_HOST_NAME).values_list("sizes_measured_at", flat=True).first(),
    )
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


# --- the sharing graph ---------------------------------------------------------------


NO_PROJECT_PARAM = "-"


@dataclass
class GraphFilters:
    project: str | None = None
    show_unused: bool = True
    volume: str | None = None
    container: str | None = None
    host: str = ""  # one host's graph ("" = every host: a single-host install)

    @classmethod
    def from_query(cls, params, *, many_hosts: bool = False) -> "GraphFilters":
        """With several hosts the graph shows one host at a time (`?host=`, else the default
        host; a focused volume's own host): ten hosts of a thousand volumes never render at once."""
        from hosts import refs
        from hosts.selectors import host_param

        def text(key):
            value = params.get(key)
            return value[:320] if value else None

        # "" means every project; "-" (never a Compose project name) the containers outside Compose.
        project = params.get("project", "")[:255]
        volume = text("volume")
        host = ""
        if many_hosts:
            host = refs.host_of(volume) if volume else (host_param(params) or refs.default_host_name())
        return cls(
            project=None if not project else ("" if project == NO_PROJECT_PARAM else project),
            show_unused=params.get("unused", "1") != "0",
            volume=volume,
            container=text("container"),
            host=host,
        )

    @property
    def is_focus(self) -> bool:
        return bool(self.volume or self.container)

    @property
    def project_param(self) -> str:
        if self.project is None:
            return ""
        return self.project or NO_PROJECT_PARAM


@dataclass
class GraphView:
    graph: Graph
    svg: str
    filters: GraphFilters


def sharing_graph(*, filters: GraphFilters, rows: MirrorRows | None = None) -> GraphView:
    rows = rows or mirror_rows()
    graph = graph_build(
        rows.volumes, rows.containers, rows.mounts,
        project=None if filters.is_focus else filters.project,
        focus_volume=filters.volume,
        focus_container=None if filters.volume else filters.container,
        show_unused=filters.show_unused,
    )
    return GraphView(graph=graph, svg=svg.graph_svg(graph_layout(graph)), filters=filters)




# --- usage history -----------------------------------------------------------------------

RANGES = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}


@dataclass
class UsageHistory:
    range_key: str
    start: datetime
    end: datetime
    points: list[tuple[datetime, int]]

    choices = (("day", "Last day"), ("week", "Week"), ("month", "Month"))

    @property
    def sample_minutes(self) -> int:
        return max(1, settings.USAGE_SAMPLE_SECONDS // 60)

    @property
    def last_at(self) -> datetime | None:
        return self.points[-1][0] if self.points else None

    @property
    def growth_bytes(self) -> int | None:
        return self.points[-1][1] - self.points[0][1] if len(self.points) > 1 else None

    @property
    def growth_per_day(self) -> float | None:
        """Bytes per day between the first and last sample of the range (an hour at least)."""
        if len(self.points) < 2:
            return None
        span = (self.points[-1][0] - self.points[0][0]).total_seconds()
        if span < 3600:
            return None
        return self.growth_bytes * 86400 / span

    @property
    def svg(self) -> str:
        return svg.usage_chart_svg(self.points, start=self.start, end=self.end)


def usage_history(*, volume: Volume, range_key: str, now: datetime | None = None) -> UsageHistory:
    range_key = range_key if range_key in RANGES else "day"
    end = now or timezone.now()
    start = end - RANGES[range_key]
    points = list(
        VolumeUsageSample.objects.filter(volume=volume, at__gte=start, at__lte=end)
        .order_by("at")
        .values_list("at", "size_bytes")
    )
    return UsageHistory(range_key=range_key, start=start, end=end, points=points)


@dataclass
class Grower:
    name: str
    size_bytes: int
    growth_bytes: int
    per_day: float | None


def largest_growers(*, days: int = 7, limit: int = 8, now: datetime | None = None, who=None) -> list[Grower]:
    """Volumes that grew most since their first sample in the window (current size minus it)."""
    now = now or timezone.now()
    first = VolumeUsageSample.objects.filter(volume=OuterRef("pk"), at__gte=now - timedelta(days=days)).order_by("at")
    rows = (
        (Volume.objects if who is None else scoping.visible_volumes(who)).present()
        .filter(size_bytes__isnull=False)
        .annotate(then_size=Subquery(first.values("size_bytes")[:1]), then_at=Subquery(first.values("at")[:1]))
        .filter(then_size__isnull=False)
        .order_by()
        .values_list("name", "size_bytes", "size_measured_at", "then_size", "then_at")
    )
    growers = []
    for name, size, measured_at, then_size, then_at in rows:
        growth = size - then_size
        if growth <= 0:
            continue
        span = ((measured_at or now) - then_at).total_seconds()
        growers.append(Grower(name, size, growth, growth * 86400 / span if span >= 3600 else None))
    growers.sort(key=lambda g: (-g.growth_bytes, g.name))
    return growers[:limit]


# --- backups (once the backups app has a Backup model) ---------------------------------------


def backup_model():
    """The Backup model when the backups app provides one with volume, status, finished_at."""
    if not apps.is_installed("backups"):
        return None
    try:
        model = apps.get_model("backups", "Backup")
    except LookupError:
        return None
    names = {f.name for f in model._meta.get_fields()}
    # status and finished_at may be the backup's own columns or read through its job
    # (annotated by its manager): either way the model answers for them.
    return model if "volume" in names and all(hasattr(model, n) for n in ("status", "finished_at")) else None


def _succeeded_status(model) -> str:
    status = getattr(model, "Status", None)
    return str(getattr(status, "SUCCEEDED", "succeeded"))


def last_successful_backups() -> dict[int, datetime] | None:
    """volume id -> when its last successful backup finished; None without the backup feature."""
    model = backup_model()
    if model is None:
        return None
    ok = model.objects.filter(status=_succeeded_status(model), finished_at__isnull=False, volume__isnull=False)
    if any(f.name == "missing" for f in model._meta.get_fields()):
        ok = ok.filter(missing=False)  # its archive was not found in storage: it protects nothing
    imported = getattr(getattr(model, "Origin", None), "IMPORTED", None)
    if imported is not None:
        ok = ok.exclude(origin=imported)  # an archive imported under the volume's name is not its backup
    try:
        rows = (
            ok.order_by()
            .values("volume")
            .annotate(last=Max("finished_at"))
            .values_list("volume", "last")
        )
        return dict(rows)
    except DatabaseError:  # the model exists but its table does not (migrations not run yet)
        return None


@dataclass
class BackupCoverage:
    volumes: int
    last_24h: int
    last_7d: int
    any_backups: bool


def backup_coverage(*, rows: MirrorRows, last: dict[int, datetime] | None, now: datetime,
                    who=None) -> BackupCoverage | None:
    if last is None:
        return None
    ids = [v.id for v in rows.volumes]
    recent = [last[i] for i in ids if i in last]
    model = backup_model()
    try:
        any_backups = bool(last) or (model.objects if who is None else scoping.visible_backups(who)).exists()
    except DatabaseError:
        any_backups = False
    return BackupCoverage(
        volumes=len(ids),
        last_24h=sum(1 for at in recent if now - at <= timedelta(hours=24)),
        last_7d=sum(1 for at in recent if now - at <= timedelta(days=7)),
        any_backups=any_backups,
    )


# --- risks and overview --------------------------------------------------------------------


def risk_settings() -> RiskSettings:
    return RiskSettings(
        writable_layer_bytes=settings.RISK_WRITABLE_LAYER_BYTES,
        anonymous_volume_bytes=settings.RISK_ANONYMOUS_VOLUME_BYTES,
        backup_max_age=timedelta(days=settings.RISK_BACKUP_MAX_AGE_DAYS),
        extra_sensitive_paths=tuple(settings.RISK_SENSITIVE_PATHS),
    )


_LOOK_UP = object()


def risk_groups(
    *, rows: MirrorRows | None = None, last=_LOOK_UP, now: datetime | None = None, engine: EngineStatus | None = None,
) -> list[FindingGroup]:
    """`last`: from last_successful_backups() (None: no backup feature); looked up when not given."""
    rows = rows or mirror_rows()
    last = last_successful_backups() if last is _LOOK_UP else last
    drills = {name: f"Restore drill #{d.pk} failed: {d.error}" for name, d in failed_last().items()}
    now = now or timezone.now()
    hosts = {v.host for v in rows.volumes} | {c.host for c in rows.containers}
    if len(hosts) <= 1:
        only = next(iter(hosts), "")
        if engine is None:
            engine = EngineStatus.objects.filter(host__name=only).first() if only else EngineStatus.of_default()
        return find_risks(
            volumes=rows.volumes, containers=rows.containers, mounts=rows.mounts,
            data_root=engine.docker_root_dir if engine else "", last_backup=last, failed_drills=drills, now=now,
            config=risk_settings(),
        )
    # Several hosts: each host's rows against its own engine's data root (a bind of it is a risk there).
    roots = dict(EngineStatus.objects.values_list("host__name", "docker_root_dir"))
    by_host = {c.id: c.host for c in rows.containers}
    return merge_groups([
        find_risks(
            volumes=[v for v in rows.volumes if v.host == host], containers=[c for c in rows.containers if c.host == host],
            mounts=[m for m in rows.mounts if by_host.get(m.container_id) == host], data_root=roots.get(host) or "",
            last_backup=last, failed_drills=drills, now=now, config=risk_settings(),
        )
        for host in sorted(hosts)
    ])


@dataclass
class HostSummary:
    """One host on the overview: its worker's state and its present volumes (the viewer's)."""

    host: Host
    volumes: int
    total_bytes: int
    unmeasured: int


def host_summaries(*, who=None) -> list[HostSummary]:
    """Every host with its present volumes counted and their sizes summed (two queries).
    `who` (a request or user): their teams' volumes only (accounts.scoping)."""
    from django.db.models import Q, Sum

    volumes = (Volume.objects if who is None else scoping.visible_volumes(who)).present()
    figures = {
        row["host_id"]: row
        for row in volumes.order_by().values("host_id").annotate(
            n=Count("id"), size=Sum("size_bytes"), unmeasured=Count("id", filter=Q(size_bytes__isnull=True)))
    }
    return [
        HostSummary(host=h, volumes=figures.get(h.pk, {}).get("n", 0), total_bytes=figures.get(h.pk, {}).get("size") or 0,
                    unmeasured=figures.get(h.pk, {}).get("unmeasured", 0))
        for h in Host.objects.select_related("engine_status").order_by("name")
    ]


@dataclass
class Overview:
    volumes: int
    named: int
    anonymous: int
    total_bytes: int
    unmeasured: int
    unused: int
    unused_bytes: int
    unused_protected: int
    reclaimable_bytes: int
    largest: list[VolumeRow]
    growers: list[Grower]
    engine: EngineStatus | None
    backups: BackupCoverage | None
    failed_jobs: list[Job]
    risks: list[FindingGroup]


def overview(*, now: datetime | None = None, who=None) -> Overview:
    """`who` (a request or user): the figures of their teams' volumes (accounts.scoping, the
    team switcher's team for a request); None: everything."""
    now = now or timezone.now()
    rows = mirror_rows(who=who)
    used = {m.volume_id for m in rows.mounts if m.kind == "volume"}
    unused = [v for v in rows.volumes if v.id not in used]
    engine = EngineStatus.of_default()
    last = last_successful_backups()
    return Overview(
        volumes=len(rows.volumes),
        named=sum(1 for v in rows.volumes if not v.anonymous),
        anonymous=sum(1 for v in rows.volumes if v.anonymous),
        total_bytes=sum(v.size_bytes or 0 for v in rows.volumes),
        unmeasured=sum(1 for v in rows.volumes if v.size_bytes is None),
        unused=len(unused),
        unused_bytes=sum(v.size_bytes or 0 for v in unused),
        unused_protected=sum(1 for v in unused if v.protected),
        reclaimable_bytes=sum(v.size_bytes or 0 for v in unused if not v.protected),
        largest=sorted((v for v in rows.volumes if v.size_bytes), key=lambda v: (-v.size_bytes, v.name))[:8],
        growers=largest_growers(now=now, who=who),
        engine=engine,
        backups=backup_coverage(rows=rows, last=last, now=now, who=who),
        failed_jobs=list(
            (Job.objects if who is None else scoping.visible_jobs(who)).filter(status=Job.Status.FAILED).select_related("created_by").order_by("-finished_at", "-id")[:5]
        ),
        risks=risk_groups(rows=rows, last=last, now=now, engine=engine),
    )
