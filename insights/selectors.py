"""Reads for the overview, graph, usage and risk pages: the database only.

Loading is here; the rules live in pure modules (`insights.graph`, `insights.risks`)
that take the plain records `mirror_rows` returns.

Over 450 lines: the overview's SQL aggregate and the risk counts (issue 16's scale work)
sit beside the row-by-row reads they must equal, which the tests compare; the next split
is the overview's SQL (overview, risk_counts and their helpers) into insights/overview.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, Case, Count, F, Max, OuterRef, Subquery, Value, When
from django.utils import timezone

from accounts import scoping
from insights import svg
from insights.graph import ContainerRow, Graph, MountRow, VolumeRow, graph_build, graph_layout
from insights.models import VolumeUsageSample
from drills.services import failed_last
from insights.risks import (FindingGroup, RiskCount, RiskSettings, bind_severity, count_groups, find_risks,
                            merge_groups, sensitive_reason)
from hosts.models import Host
from hosts.refs import host_of
from jobs.models import Job
from project.db import by_code_point, count_where
from volumes.models import (COMPOSE_PROJECT_LABEL, PROTECT_LABEL, Container, EngineStatus, Mount, Volume,
                            labels_protected, mount_hint)


@dataclass
class MirrorRows:
    volumes: list[VolumeRow]
    containers: list[ContainerRow]
    mounts: list[MountRow]


VOLUME_ROW_FIELDS = ("pk", "name", "anonymous", "size_bytes", "labels", "last_mount", "container_count")


def _volume_row(pk, name, anonymous, size, labels, last_mount, count) -> VolumeRow:
    """A VolumeRow from the values of VOLUME_ROW_FIELDS."""
    return VolumeRow(
        id=pk, name=name, anonymous=anonymous, size_bytes=size,
        project=str((labels or {}).get(COMPOSE_PROJECT_LABEL, "")),
        protected=labels_protected(labels), hint=mount_hint(last_mount, count) if anonymous else "",
        host=host_of(name),
    )


def _volumes(who):
    return Volume.objects.all() if who is None else scoping.visible_volumes(who)


def _containers(who):
    return Container.objects.all() if who is None else scoping.visible_containers(who)


def _mounts(who):
    return Mount.objects.all() if who is None else scoping.visible_mounts(who)


def mirror_rows(*, who=None, host: str = "") -> MirrorRows:
    """Present volumes and containers and their mounts, as plain records (four queries).
    `who` (a request or user): their teams' (accounts.scoping); None: all. `host`: one
    host's ("" = every host)."""
    all_of = who is None
    on_host = {"host__name": host} if host else {}
    volumes = [
        _volume_row(*row)
        for row in (Volume.objects if all_of else scoping.visible_volumes(who)).present().filter(**on_host)
        .order_by()
        .values_list(*VOLUME_ROW_FIELDS)
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
    # The growth is computed, filtered and ordered in SQL: only the `limit` shown are read.
    top = list(
        _volumes(who).present()
        .filter(size_bytes__isnull=False)
        .annotate(growth=F("size_bytes") - Subquery(first.values("size_bytes")[:1]))
        .filter(growth__gt=0)
        .order_by("-growth", by_code_point("name"))
        .values_list("pk", "growth")[:limit]
    )
    # The first sample's time for those few only.
    rows = {pk: row for pk, *row in Volume.objects.filter(pk__in=[pk for pk, _ in top]).annotate(
        then_at=Subquery(first.values("at")[:1])).values_list("pk", "name", "size_bytes", "size_measured_at", "then_at")}
    growers = []
    for pk, growth in top:
        if pk not in rows:  # removed between the two queries
            continue
        name, size, measured_at, then_at = rows[pk]
        span = ((measured_at or now) - then_at).total_seconds()
        growers.append(Grower(name, size, growth, growth * 86400 / span if span >= 3600 else None))
    return growers


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


def _protecting_backups(model):
    """The backups that protect their volume: succeeded, ended, archive present, not imported."""
    ok = model.objects.filter(status=_succeeded_status(model), finished_at__isnull=False, volume__isnull=False)
    if any(f.name == "missing" for f in model._meta.get_fields()):
        ok = ok.filter(missing=False)  # its archive was not found in storage: it protects nothing
    imported = getattr(getattr(model, "Origin", None), "IMPORTED", None)
    if imported is not None:
        ok = ok.exclude(origin=imported)  # an archive imported under the volume's name is not its backup
    return ok


def last_successful_backups() -> dict[int, datetime] | None:
    """volume id -> when its last successful backup finished; None without the backup feature."""
    model = backup_model()
    if model is None:
        return None
    ok = _protecting_backups(model)
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
    risks: list[RiskCount]


def overview(*, now: datetime | None = None, who=None) -> Overview:
    """`who` (a request or user): the figures of their teams' volumes (accounts.scoping, the
    team switcher's team for a request); None: everything.

    Counted in SQL (one aggregate over the present volumes with a few correlated
    subqueries, conditional counts), reading only the rows shown (the largest and growing
    volumes, the failed jobs): with 10,000 volumes loading them all into Python cost most of
    a second on each first view after a change (bench/many_hosts.py). `risk_groups` (the
    risks page) applies the same rules row by row; tests hold the two equal."""
    now = now or timezone.now()
    volumes = _volumes(who).present()
    engine = EngineStatus.of_default()
    figures = _volume_figures(volumes=volumes, who=who, now=now)
    # The protect label is a few volumes' and its rule is Python's (labels_protected).
    protected = [size or 0 for size, labels in volumes.order_by().annotate(_used=_used(who))
                 .filter(_used=False, labels__has_key=PROTECT_LABEL).values_list("size_bytes", "labels")
                 if labels_protected(labels)]
    unused_bytes = int(figures["unused_bytes"] or 0)
    largest = [_volume_row(*row) for row in volumes.filter(size_bytes__gt=0)
               .order_by("-size_bytes", by_code_point("name")).values_list(*VOLUME_ROW_FIELDS)[:8]]
    backups = None
    if "last_24h" in figures:
        model = backup_model()
        try:
            any_backups = figures["backed_up"] > 0 or _protecting_backups(model).exists() or (
                model.objects if who is None else scoping.visible_backups(who)).exists()
        except DatabaseError:
            any_backups = False
        backups = BackupCoverage(volumes=figures["n"], last_24h=figures["last_24h"], last_7d=figures["last_7d"],
                                 any_backups=any_backups)
    return Overview(
        volumes=figures["n"],
        named=figures["n"] - figures["n_anonymous"],
        anonymous=figures["n_anonymous"],
        total_bytes=int(figures["total"] or 0),
        unmeasured=figures["unmeasured"],
        unused=figures["unused"],
        unused_bytes=unused_bytes,
        unused_protected=len(protected),
        reclaimable_bytes=unused_bytes - sum(protected),
        largest=largest,
        growers=largest_growers(now=now, who=who),
        engine=engine,
        backups=backups,
        # Only what the card shows: the figures are pickled into the `figures` cache, which
        # must hold no one's account (created_by would bring its password hash along).
        failed_jobs=list(
            (Job.objects if who is None else scoping.visible_jobs(who)).filter(status=Job.Status.FAILED)
            .only("pk", "kind", "target", "finished_at", "error").order_by("-finished_at", "-id")[:5]
        ),
        risks=risk_counts(who=who, now=now, engine=engine, figures=figures),
    )


def _mounted_by(mounts):
    """Whether one of `mounts` mounts the volume as a volume, as one uncorrelated IN read
    once: correlated per volume (a join to containers, a team's nest of subqueries from
    accounts.scoping) PostgreSQL could plan it again for each of 10,000 volumes (minutes)."""
    return Case(When(pk__in=mounts.filter(kind="volume", volume__isnull=False).values("volume_id"), then=Value(True)),
                default=Value(False), output_field=BooleanField())


def _used(who):
    """Whether a present container mounts the volume (the sharing graph's "used")."""
    return _mounted_by(_mounts(who).filter(container__gone_since__isnull=True))


def _risk_mounts(who, containers):
    """The mounts the risk rules see: those of the visible present containers."""
    mounts = _mounts(who).filter(container__gone_since__isnull=True)
    return mounts if who is None else mounts.filter(container__in=containers)


def _volume_figures(*, volumes, who, now: datetime) -> dict:
    """The overview's and the risk summary's counts over `volumes`, in one query: the
    volumes with their "used" flags (each an uncorrelated IN list, read once) joined to
    each volume's last protecting backup (one GROUP BY over the backups), counted by an
    outer query (project.db.count_where). aggregate() read the 30,000 backups seven times:
    268 ms of the overview's first view in bench/many_hosts.py, 58 ms this way. Without the
    backup feature the backup counts are left out."""
    config = risk_settings()
    inner = volumes.order_by().annotate(_used=_used(who))
    users = "_used"
    if who is not None:  # for a team the risk rules count only the visible containers as users
        inner = inner.annotate(_users=_mounted_by(_risk_mounts(who, _containers(who).present())))
        users = "_users"
    inner = inner.values("id", "anonymous", "size_bytes", "_used", *([users] if users != "_used" else []))
    big = [config.anonymous_volume_bytes]
    counts = {
        "n": ("1 = 1", []), "n_anonymous": ("v.anonymous", []), "unmeasured": ("v.size_bytes IS NULL", []),
        "unused": ("NOT v._used", []),
        "anon_mounted": (f"v.anonymous AND v.size_bytes >= %s AND v.{users}", big),
        "anon_unmounted": (f"v.anonymous AND v.size_bytes >= %s AND NOT v.{users}", big),
    }
    sums = {"total": ("1 = 1", []), "unused_bytes": ("NOT v._used", [])}
    model = backup_model()
    if model is not None:
        adapt = connection.ops.adapt_datetimefield_value
        counts.update({
            "backed_up": ("b.last IS NOT NULL", []),
            "last_24h": ("b.last >= %s", [adapt(now - timedelta(hours=24))]),
            "last_7d": ("b.last >= %s", [adapt(now - timedelta(days=7))]),
            # Never backed up: low when it holds nothing, high when it does or is not measured yet.
            "never_empty": ("b.last IS NULL AND v.size_bytes = 0", []),
            "never": ("b.last IS NULL AND (v.size_bytes IS NULL OR v.size_bytes <> 0)", []),
            "stale": ("b.last IS NOT NULL AND b.last < %s", [adapt(now - config.backup_max_age)]),
        })
        last = (_protecting_backups(model).order_by().values("volume_id").annotate(last=Max("finished_at"))
                .values("volume_id", "last"))
        if who is not None:  # a team's: the GROUP BY reads only its volumes' backups
            last = last.filter(volume__in=volumes.order_by().values("id"))
        try:
            with transaction.atomic():  # a savepoint: PostgreSQL's transaction survives the error
                return count_where(inner, counts, sums=sums, join=last, on="b.volume_id = v.id")
        except DatabaseError:  # the model exists but its table does not (migrations not run yet)
            for key in ("backed_up", "last_24h", "last_7d", "never_empty", "never", "stale"):
                counts.pop(key)
    return count_where(inner, counts, sums=sums)


def risk_counts(*, who=None, now: datetime | None = None, engine: EngineStatus | None = None,
                figures: dict | None = None) -> list[RiskCount]:
    """The overview's summary of `risk_groups`: each kind's findings counted and graded in
    SQL by the same rules (insights.risks). `engine`: the data root when one host is shown.
    `figures`: _volume_figures of the same viewer, when already counted."""
    now = now or timezone.now()
    config = risk_settings()
    volumes = _volumes(who).present()
    containers = _containers(who).present()
    mounts = _risk_mounts(who, containers)
    figures = figures or _volume_figures(volumes=volumes, who=who, now=now)
    counts: dict[tuple[str, str], int] = {}

    def add(slug: str, severity: str, n: int) -> None:
        counts[(slug, severity)] = counts.get((slug, severity), 0) + n

    add("anonymous-data", "medium", figures["anon_mounted"])
    add("anonymous-data", "high", figures["anon_unmounted"])
    if "never" in figures:
        add("no-backup", "low", figures["never_empty"])
        add("no-backup", "high", figures["never"])
        add("no-backup", "medium", figures["stale"])

    writers = (mounts.filter(kind="volume", read_only=False, volume__in=volumes).order_by()
               .values("volume_id").annotate(n=Count("container_id", distinct=True)).filter(n__gt=1))
    add("rw-shared", "high", writers.count())
    add("writable-layer", "medium", containers.filter(size_rw__gte=config.writable_layer_bytes).count())

    # Binds: the same few host paths over and over; each distinct one is judged once.
    hosts = (set(volumes.order_by().values_list("host_id", flat=True).distinct())
             | set(containers.order_by().values_list("host_id", flat=True).distinct()))
    one_root, roots = (engine.docker_root_dir if engine else ""), None
    if len(hosts) > 1:  # several hosts: each one's binds against its own engine's data root
        roots = dict(EngineStatus.objects.values_list("host_id", "docker_root_dir"))
    for host_id, source, read_only, n in (
            mounts.filter(kind="bind").order_by().values("container__host_id", "source", "read_only")
            .annotate(n=Count("pk")).values_list("container__host_id", "source", "read_only", "n")):
        data_root = one_root if roots is None else (roots.get(host_id) or "")
        if sensitive_reason(source, read_only=read_only, data_root=data_root, extra=config.extra_sensitive_paths):
            add("sensitive-bind", bind_severity(source, read_only=read_only), n)

    failed = list(failed_last())
    if failed:
        add("drill-failed", "high", volumes.filter(name__in=failed).count())
    return count_groups(counts)
