"""Reads for the pages: database only, shaped for the templates."""

from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db.models import F, Prefetch, Q, QuerySet

from accounts import scoping
from hosts import refs
from hosts.selectors import host_param
from volumes.models import COMPOSE_PROJECT_LABEL, Container, Mount, Volume

VOLUME_SORTS = {
    "name": ("name",),
    "-name": ("-name",),
    "size": (F("size_bytes").asc(nulls_first=True), "name"),
    "-size": (F("size_bytes").desc(nulls_last=True), "name"),
    "created": (F("created_at").asc(nulls_first=True), "name"),
    "-created": (F("created_at").desc(nulls_last=True), "name"),
    "containers": ("container_count", "name"),
    "-containers": ("-container_count", "name"),
}
PAGE_SIZE = 50


@dataclass
class VolumeFilters:
    q: str = ""
    usage: str = ""  # "", "used", "unused"
    kind: str = ""  # "", "named", "anonymous"
    sort: str = "name"
    show_gone: bool = False
    host: str = ""  # a host's name; "" = every host

    @classmethod
    def from_query(cls, params) -> "VolumeFilters":
        sort = params.get("sort", "name")
        return cls(
            q=params.get("q", "").strip()[:200],
            usage=params.get("usage", "") if params.get("usage") in ("used", "unused") else "",
            kind=params.get("kind", "") if params.get("kind") in ("named", "anonymous") else "",
            sort=sort if sort in VOLUME_SORTS else "name",
            show_gone=params.get("gone") == "1",
            host=host_param(params),
        )


def volume_list(*, filters: VolumeFilters, who=None) -> QuerySet[Volume]:
    """`who`: a request or user whose teams' volumes these are (accounts.scoping); None: all."""
    qs = Volume.objects.all() if who is None else scoping.visible_volumes(who)
    if not filters.show_gone:
        qs = qs.filter(gone_since__isnull=True)
    if filters.q:
        qs = qs.filter(search_text__contains=filters.q.lower())
    if filters.usage == "used":
        qs = qs.filter(container_count__gt=0)
    elif filters.usage == "unused":
        qs = qs.filter(container_count=0)
    if filters.kind:
        qs = qs.filter(anonymous=filters.kind == "anonymous")
    if filters.host:
        qs = qs.filter(host__name=filters.host)
    return qs.order_by(*VOLUME_SORTS[filters.sort]).only(
        "name", "driver", "size_bytes", "size_measured_at", "container_count", "anonymous", "labels",
        "created_at", "gone_since", "first_seen_at", "last_mount",
    )


def volume_page(*, filters: VolumeFilters, page: str | int | None, who=None):
    return Paginator(volume_list(filters=filters, who=who), PAGE_SIZE).get_page(page)


def volume_detail(*, name: str) -> Volume | None:
    return Volume.objects.filter(name=name).first()


def volume_mounts(*, volume: Volume) -> list[Mount]:
    return list(
        Mount.objects.filter(volume=volume, container__gone_since__isnull=True)
        .select_related("container")
        .order_by("container__name", "destination")
    )


def container_list(*, q: str = "", project: str = "", host: str = "", who=None) -> QuerySet[Container]:
    """`who` (accounts.scoping): the containers mounting their volumes, and of those mounts
    only their volumes' (and binds); None: all. `host`: one host's containers ("" = every host)."""
    qs = Container.objects.present() if who is None else scoping.visible_containers(who).present()
    mounts = Mount.objects.all() if who is None else scoping.visible_mounts(who)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(image__icontains=q) | Q(compose_project__icontains=q))
    if project:
        qs = qs.filter(compose_project=project)
    if host:
        qs = qs.filter(host__name=host)
    return qs.select_related("host").prefetch_related(
        Prefetch("mounts", queryset=mounts.select_related("volume").only(
            "container_id", "kind", "source", "destination", "read_only", "volume_id", "volume__name",
        ).order_by("destination"))
    ).order_by("compose_project", "name")


CONTAINER_PAGE_SIZE = 100


def container_page(*, page: str | int | None, **filters):
    """One page of container_list: its mounts are fetched for that page's containers only
    (all 3,000 of ten hosts rendered at once took seconds, bench/many_hosts.py)."""
    return Paginator(container_list(**filters), CONTAINER_PAGE_SIZE).get_page(page)


def container_detail(*, engine_id_or_name: str) -> Container | None:
    return (
        Container.objects.filter(Q(engine_id=engine_id_or_name) | Q(name=engine_id_or_name))
        .order_by("gone_since")
        .first()
    )


# --- lifecycle: who uses a volume, what a prune would remove ------------------------


def volume_users(*, volume: Volume) -> list[Container]:
    """Containers (running or stopped) that mount the volume, as the mirror knows them."""
    return list(
        Container.objects.present().filter(mounts__volume=volume).distinct().order_by("name")
    )


@dataclass
class PrunePreview:
    include_named: bool
    volumes: list[Volume]  # what would be removed
    protected: list[Volume]  # unused but labelled cargohold.protect=true: kept
    total_bytes: int
    unmeasured: int  # volumes whose size is not known (not in the total)
    host: str = ""  # the host whose volumes these are


def _has_label(volume: Volume, label: str) -> bool:
    key, sep, value = label.partition("=")
    return key in volume.labels and (not sep or str(volume.labels[key]) == value)


def prune_preview(*, include_named: bool, label: str = "", host: str = "") -> PrunePreview:
    """Unused volumes a prune would remove: anonymous ones, or all with include_named.

    `label` ("key" or "key=value") narrows it as `docker volume prune --filter label=` does.
    From the mirror: the worker checks each one against the engine again before it
    removes anything.
    """
    host = host or refs.default_host_name()  # a prune removes one host's volumes (its engine's)
    qs = Volume.objects.present().filter(container_count=0, host__name=host)
    if not include_named:
        qs = qs.filter(anonymous=True)
    candidates = list(
        qs.order_by(F("size_bytes").desc(nulls_last=True), "name").only(
            "name", "driver", "labels", "anonymous", "size_bytes", "size_measured_at", "created_at"
        )
    )
    if label:
        candidates = [v for v in candidates if _has_label(v, label)]
    volumes = [v for v in candidates if not v.is_protected]
    return PrunePreview(
        include_named=include_named,
        volumes=volumes,
        protected=[v for v in candidates if v.is_protected],
        total_bytes=sum(v.size_bytes or 0 for v in volumes),
        unmeasured=sum(1 for v in volumes if v.size_bytes is None),
        host=host,
    )


def compose_project_volumes(*, project: str) -> list[Volume]:
    """The project's volumes: those compose labelled, and external ones its containers mount."""
    if not project:
        return []
    names = set(
        Container.objects.present().filter(compose_project=project, mounts__volume__isnull=False)
        .values_list("mounts__volume__name", flat=True)
    )
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.lookups import Exact

    # The label compared in SQL: not every labelled volume loaded (seconds with 10,000 of them).
    labelled = Volume.objects.present().filter(Exact(KeyTextTransform(COMPOSE_PROJECT_LABEL, "labels"), project))
    return list(Volume.objects.present().filter(Q(name__in=names) | Q(pk__in=labelled.values("pk"))).order_by("name"))
