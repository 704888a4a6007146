"""Reads of the audit trail for its page."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet

from accounts.models import AuditEvent

PAGE_SIZE = 50


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value and value.strip() else None
    except ValueError:
        return None


@dataclass
class AuditFilters:
    user: str = ""
    action: str = ""
    object: str = ""
    result: str = ""
    date_from: date | None = None  # UTC days, inclusive
    date_to: date | None = None
    host: str = ""  # events about a host's volumes (and its backups, restores) and the host itself

    @classmethod
    def from_query(cls, params) -> "AuditFilters":
        from hosts.selectors import host_param

        result = params.get("result", "")
        return cls(
            host=host_param(params),
            user=params.get("user", "").strip()[:150],
            action=params.get("action", "").strip()[:64],
            object=params.get("object", "").strip()[:512],
            result=result if result in AuditEvent.Result.values else "",
            date_from=_date(params.get("from", "")),
            date_to=_date(params.get("to", "")),
        )


def audit_events(*, filters: AuditFilters, who=None) -> QuerySet[AuditEvent]:
    """`who` (a request or user): the events about their teams' objects (accounts.scoping)."""
    from accounts import scoping

    qs = AuditEvent.objects.all() if who is None else scoping.visible_audit(who)
    if filters.user:  # a failed login has no actor: the name tried is its object
        qs = qs.filter(Q(actor_name__icontains=filters.user)
                       | Q(action="login", result=AuditEvent.Result.ERROR, object_name__icontains=filters.user))
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.object:
        qs = qs.filter(object_name__icontains=filters.object)
    if filters.result:
        qs = qs.filter(result=filters.result)
    if filters.host:
        qs = qs.filter(audit_host_q(filters.host))
    if filters.date_from:
        qs = qs.filter(at__gte=datetime.combine(filters.date_from, time.min, tzinfo=timezone.utc))
    if filters.date_to:
        qs = qs.filter(at__lt=datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=timezone.utc))
    return qs.order_by("-at", "-id")


def audit_host_q(host: str) -> Q:
    """The events about the host `host`: its volumes' (their references, hosts.refs), its
    volumes' backups and restores (named by id), and the host's own (registered, edited)."""
    from django.db.models import CharField
    from django.db.models.functions import Cast

    from backups.models import Backup
    from hosts.selectors import ref_host_q
    from restores.models import Restore

    def ids(model):
        return model.objects.filter(ref_host_q("volume_name", host)).annotate(
            id_text=Cast("pk", output_field=CharField())).values("id_text")

    return (
        (Q(object_type="volume") & ref_host_q("object_name", host))
        | Q(object_type="host", object_name=host)
        | Q(object_type="backup", object_name__in=ids(Backup))
        | Q(object_type="restore", object_name__in=ids(Restore))
    )


def audit_page(*, filters: AuditFilters, page: str | int | None, who=None):
    return Paginator(audit_events(filters=filters, who=who), PAGE_SIZE).get_page(page)


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


# --- login lockouts (django-axes' failed attempts) -------------------------------------------

_LOCKOUT_FIELDS = {"user": "username", "address": "ip_address"}


@dataclass
class Lockout:
    kind: str  # "user" (an account) or "address" (a client address)
    name: str
    failures: int
    until: datetime


def lockouts(*, kind: str | None = None, name: str | None = None) -> list[Lockout]:
    """Accounts and addresses locked out now, latest lockout end first: failures within the
    cool-off reaching the limit, counted the way django-axes counts them (per account and
    per address, AXES_LOCKOUT_PARAMETERS)."""
    from axes.helpers import get_cool_off, get_failure_limit
    from axes.models import AccessAttempt
    from django.db.models import Max, Sum
    from django.utils.timezone import now

    cool_off, limit = get_cool_off(), get_failure_limit(None, None)
    recent = AccessAttempt.objects.all()
    if cool_off is not None:
        recent = recent.filter(attempt_time__gte=now() - cool_off)
    found = []
    for this_kind, field in _LOCKOUT_FIELDS.items():
        if kind not in (None, this_kind):
            continue
        rows = recent.exclude(**{f"{field}__isnull": True})
        if field == "username":  # (an address field turns "" into NULL: no such filter there)
            rows = rows.exclude(username="")
        if name is not None:
            rows = rows.filter(**{field: name})
        rows = rows.values(field).annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        for row in rows.filter(failures__gte=limit):
            until = row["last"] + cool_off if cool_off is not None else None
            found.append(Lockout(kind=this_kind, name=row[field], failures=row["failures"], until=until))
    return sorted(found, key=lambda lock: lock.until or datetime.max.replace(tzinfo=timezone.utc), reverse=True)


def is_locked_out(*, kind: str, name: str) -> bool:
    return bool(name) and bool(lockouts(kind=kind, name=name))
