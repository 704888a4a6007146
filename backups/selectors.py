"""Reads for the backup pages and commands: database only."""

from dataclasses import dataclass
from datetime import date, datetime, time, timezone

from django.core.paginator import Paginator
from django.db.models import QuerySet

from accounts import scoping
from backups.models import Backup
from hosts.selectors import host_param, ref_host_q
from volumes.models import Container, Volume

PAGE_SIZE = 50


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()[:10]) if value else None
    except ValueError:
        return None


@dataclass
class BackupFilters:
    volume: str = ""
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    host: str = ""  # the host of the backed-up volume ("" = every host)

    @classmethod
    def from_query(cls, params) -> "BackupFilters":
        status = params.get("status", "")
        return cls(
            volume=params.get("volume", "").strip()[:320],
            status=status if status in Backup.Status.values else "",
            date_from=_parse_date(params.get("from", "")),
            date_to=_parse_date(params.get("to", "")),
            host=host_param(params),
        )

    @property
    def active(self) -> bool:
        return bool(self.volume or self.status or self.date_from or self.date_to or self.host)


def _backups(who) -> QuerySet[Backup]:
    """`who` (a request or user): their teams' backups (accounts.scoping); None: all."""
    return Backup.objects.all() if who is None else scoping.visible_backups(who)


def backup_list(*, filters: BackupFilters | None = None, who=None) -> QuerySet[Backup]:
    qs = _backups(who).select_related("job__created_by", "volume", "repository")  # volume: an anonymous one's hint
    if filters is None:
        return qs
    if filters.volume:
        qs = qs.filter(volume_name=filters.volume)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.host:
        qs = qs.filter(ref_host_q("volume_name", filters.host))
    if filters.date_from:
        qs = qs.filter(created_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=timezone.utc))
    if filters.date_to:
        qs = qs.filter(created_at__lte=datetime.combine(filters.date_to, time.max, tzinfo=timezone.utc))
    return qs


def backup_page(*, filters: BackupFilters, page, who=None):
    return Paginator(backup_list(filters=filters, who=who), PAGE_SIZE).get_page(page)


def backups_active(*, limit: int = 20, who=None) -> tuple[list[Backup], int]:
    """The oldest active backups (each polls its job: a bulk run of hundreds shows the
    first few) and how many are active in all."""
    qs = _backups(who).filter(status__in=Backup.ACTIVE)
    return list(qs.select_related("job__created_by").order_by("created_at", "id")[:limit]), qs.count()


def backups_of_volume(*, name: str, limit: int = 10) -> list[Backup]:
    """(Of one volume: visible with it.)"""
    return list(Backup.objects.filter(volume_name=name).select_related("job__created_by")[:limit])


def backup_detail(*, backup_id: int) -> Backup | None:
    return Backup.objects.select_related("job__created_by", "volume").filter(pk=backup_id).first()


VOLUME_CHOICES_MAX = 200  # more: the list page's volume filter is a text field, not a menu


def backup_volume_names(*, who=None, limit: int | None = None) -> list[str]:
    """The backed-up volumes' names, sorted; `limit`: at most that many (a menu of 10,000
    names took over a second to render, bench/many_hosts.py)."""
    qs = _backups(who).order_by("volume_name").values_list("volume_name", flat=True).distinct()
    return list(qs if limit is None else qs[:limit])


def compose_projects(*, who=None) -> list[str]:
    """Compose projects that have volumes: by label on the volume, or mounted by a service
    (with `who`: their teams' volumes, accounts.scoping)."""
    volumes = Volume.objects.all() if who is None else scoping.visible_volumes(who)
    from django.db.models.fields.json import KeyTextTransform

    # Distinct in SQL: not a row (or a labels document) per volume (10,000 of them took 2 s).
    from_containers = set(
        Container.objects.present().exclude(compose_project="")
        .filter(mounts__volume__in=volumes.values("pk")).order_by().values_list("compose_project", flat=True).distinct()
    )
    from_labels = set(
        volumes.present().filter(labels__has_key="com.docker.compose.project").order_by()
        .annotate(project=KeyTextTransform("com.docker.compose.project", "labels"))
        .values_list("project", flat=True).distinct()
    )
    return sorted(p for p in from_containers | from_labels if p)




def volumes_by_name(*, names: list[str], who=None) -> tuple[list[Volume], list[str]]:
    """(known volumes in the given order, names that are unknown or gone, or, with `who`,
    not theirs to back up: accounts.scoping)."""
    volumes = Volume.objects.all() if who is None else scoping.visible_volumes(who, scoping.roles.RUN_BACKUP)
    found = {v.name: v for v in volumes.present().filter(name__in=names)}
    known = [found[n] for n in dict.fromkeys(names) if n in found]
    unknown = [n for n in dict.fromkeys(names) if n not in found]
    return known, unknown


def running_users_of(*, volume: Volume) -> list[Container]:
    """Running containers that mount the volume (what the consistency option would stop)."""
    return list(
        Container.objects.present().filter(mounts__volume=volume, state="running").distinct().order_by("name")
    )
