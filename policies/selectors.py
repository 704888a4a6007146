"""Reads for the policy pages, the volumes list and the overview: database only.

Over 450 lines: health_figures (the protection summary in SQL, for the overview at 10,000
volumes) sits beside health_summary and protection_map, the row-by-row figures it must
equal and reuses for the listed volumes; the next split is the health figures into
policies/health.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max, Q, Subquery
from django.utils import timezone

from policies import cron, retention
from policies.selection import selection_q
from policies.models import BackupPolicy, Delivery, NotificationSettings, PolicyRun
from project.errors import CargoholdError


# --- policies -------------------------------------------------------------------------------


@dataclass
class PolicyRow:
    policy: BackupPolicy
    description: str
    next_run: datetime | None
    last_run: PolicyRun | None
    selection: str
    problem: str = ""


def _describe_selection(policy: BackupPolicy) -> tuple[str, str]:
    try:
        return policy.selection.describe(), ""
    except CargoholdError as exc:
        return f"{policy.selector_kind}: {policy.selector_value}", str(exc)


def policy_covers_host(policy: BackupPolicy, host: str) -> bool:
    """Whether the policy selects a volume of `host` now (a listed reference counts even
    before the volume exists: its runs are that host's)."""
    from hosts.refs import host_of
    from policies.selection import selected_volume_names

    try:
        return any(host_of(name) == host for name in selected_volume_names(policy.selection))
    except CargoholdError:
        return False


def policy_rows(*, now: datetime | None = None, who=None, host: str = "") -> list[PolicyRow]:
    """`who` (a request or user): their teams' policies (accounts.scoping); None: all.
    `host`: only the policies that select a volume of that host now (each selection is
    evaluated, so only when asked)."""
    from accounts import scoping

    now = now or timezone.now()
    policies = list(BackupPolicy.objects.all() if who is None else scoping.visible_policies(who))
    if host:
        policies = [p for p in policies if policy_covers_host(p, host)]
    latest_ids = (
        PolicyRun.objects.filter(policy__in=policies).values("policy").annotate(last=Max("pk")).values_list("last", flat=True)
    )
    last_runs = {r.policy_id: r for r in PolicyRun.objects.filter(pk__in=list(latest_ids))}
    rows = []
    for p in policies:
        described, problem = _describe_selection(p)
        try:
            nxt = cron.next_runs(p.cron, p.timezone, after=now, count=1)[0] if p.enabled else None
        except Exception as exc:
            nxt, problem = None, problem or str(exc)
        rows.append(PolicyRow(p, cron.describe(p.cron), nxt, last_runs.get(p.pk), described, problem))
    return rows


def policy_get(*, policy_id: int) -> BackupPolicy | None:
    return BackupPolicy.objects.filter(pk=policy_id).first()


def policy_next_runs(*, policy: BackupPolicy, now: datetime | None = None, count: int = 5) -> list[datetime]:
    try:
        return cron.next_runs(policy.cron, policy.timezone, after=now or timezone.now(), count=count)
    except Exception:
        return []


def policy_volumes(*, policy: BackupPolicy) -> list[dict]:
    """The volumes the selection covers right now, with whether the mirror knows them."""
    from policies.selection import selected_volume_names
    from volumes.models import Volume

    try:
        names = selected_volume_names(policy.selection)
    except CargoholdError:
        return []
    known = dict(Volume.objects.filter(name__in=names).values_list("name", "gone_since"))
    return [{"name": n, "known": n in known, "gone": known.get(n) is not None} for n in names]


def policy_runs(*, policy: BackupPolicy, limit: int = 50) -> list[PolicyRun]:
    return list(PolicyRun.objects.filter(policy=policy)[:limit])


@dataclass
class VolumePreview:
    volume_name: str
    plan: retention.Plan
    records: dict[int, retention.Record]

    @property
    def deletions(self) -> list[retention.Record]:
        return self.plan.delete

    @property
    def kept(self) -> list[tuple[retention.Record, list[str]]]:
        return sorted(
            ((self.records[i], reasons) for i, reasons in self.plan.keep.items() if i in self.records),
            key=lambda pair: pair[0].at, reverse=True,
        )


def retention_preview(*, policy: BackupPolicy, now: datetime | None = None) -> list[VolumePreview]:
    """What the policy's rules would delete today, per volume it has backups of (a
    dry run: storage is assumed healthy; the real prune re-checks everything)."""
    from policies.pruning import retention_apply, retention_records

    names = sorted(set(
        PolicyRun.objects.filter(policy=policy, backup_ref__isnull=False).values_list("volume_name", flat=True)
    ))
    previews = []
    for name in names:
        records = retention_records(policy=policy, volume_name=name)
        if not any(r.owned for r in records):
            continue
        outcome = retention_apply(policy=policy, volume_name=name, now=now, dry_run=True, records=records)
        previews.append(VolumePreview(name, outcome.plan, {r.id: r for r in records}))
    return previews


# --- protection: is each volume covered, backed up lately, failing? ----------------------------


@dataclass
class Protection:
    volume: str
    in_use: bool
    policy_names: list[str] = field(default_factory=list)
    policy_ids: list[int] = field(default_factory=list)
    last_success_at: datetime | None = None
    last_run: PolicyRun | RunState | None = None  # a whole PolicyRun when it failed
    overdue: bool = False
    overdue_detail: str = ""
    proven_at: datetime | None = None  # the end of its latest succeeded restore drill (drills)
    drill_failed: bool = False  # its latest restore drill failed

    @property
    def covered(self) -> bool:
        return bool(self.policy_names)

    @property
    def last_run_failed(self) -> bool:
        run = self.last_run
        if run is None or run.status != PolicyRun.Status.FAILED:
            return False
        # A good backup since (taken by hand, another policy) ends the alarm.
        return self.last_success_at is None or run.finished_at is None or self.last_success_at < run.finished_at

    @property
    def state(self) -> str:
        """The worst thing to say about the volume, as a CSS-friendly word."""
        if not self.covered:
            return "unprotected-in-use" if self.in_use else "unprotected"
        if self.last_run_failed:
            return "failed"
        if self.overdue:
            return "overdue"
        if self.last_success_at is None:
            return "never"
        return "ok"

    @property
    def label(self) -> str:
        # "protected" is kept for the never-delete label (cargohold.protect): these say coverage.
        return {
            "unprotected-in-use": "in use, no policy",
            "unprotected": "no policy",
            "failed": "failing",
            "overdue": "overdue",
            "never": "never backed up",
            "ok": "covered",
        }[self.state]


def _grace(policy: BackupPolicy) -> timedelta:
    return timedelta(minutes=policy.overdue_grace_minutes)


def _named(qs, field: str, names: list[str] | None):
    """`qs` narrowed to those volume names; None: every volume (no list of 10,000 names
    sent to the database: the overview's case, bench/many_hosts.py)."""
    return qs if names is None else qs.filter(**{f"{field}__in": names})


@dataclass(frozen=True)
class RunState:
    """A run that did not fail, as protection needs it (a model instance per volume cost
    a third of a second with 10,000 volumes)."""

    pk: int
    volume_name: str
    policy_id: int
    status: str
    finished_at: datetime | None
    created_at: datetime | None
    message: str = ""


def _latest_runs(names: list[str] | None) -> dict[str, PolicyRun | RunState]:
    """Each volume's latest ended run. Only a failed one is loaded whole (its message is
    shown); the others need just their status and end, read as values: loading 10,000 runs
    with their jobs and backups took 2 s."""
    latest = (
        _named(PolicyRun.objects.all(), "volume_name", names)
        .filter(status__in=(PolicyRun.Status.SUCCEEDED, PolicyRun.Status.FAILED))
        .order_by().values("volume_name").annotate(last=Max("pk")).values("last")
    )
    rows = PolicyRun.objects.filter(pk__in=Subquery(latest)).select_related(None).order_by()
    out, failed = {}, []
    for pk, volume_name, policy_id, status, finished_at, created_at in rows.values_list(
            "pk", "volume_name", "policy_id", "status", "finished_at", "created_at"):
        if status == PolicyRun.Status.FAILED:
            failed.append(pk)
            continue
        out[volume_name] = RunState(pk=pk, volume_name=volume_name, policy_id=policy_id, status=status,
                                    finished_at=finished_at, created_at=created_at)
    for run in PolicyRun.objects.filter(pk__in=failed).select_related("policy"):
        out[run.volume_name] = run
    return out


def protection_map(*, names: list[str] | None, now: datetime | None = None) -> dict[str, Protection]:
    """Protection of the named volumes (None: every present one) in a handful of queries,
    whatever their number."""
    from backups.models import Backup
    from volumes.models import Mount, Volume

    now = now or timezone.now()
    if names is not None and not names:
        return {}
    volumes = list(_named(Volume.objects.all() if names is not None else Volume.objects.present(), "name", names)
                   .values("name", "labels", "container_count", "created_at", "first_seen_at", "gone_since"))
    policies = []
    for p in BackupPolicy.objects.filter(enabled=True):
        try:
            policies.append((p, p.selection, cron.max_interval(p.cron, p.timezone, now=now) + _grace(p)))
        except CargoholdError:
            continue
    projects: dict[str, set[str]] = {}
    if any(sel.kind == "compose" for _, sel, _ in policies):
        for vname, project in _named(Mount.objects.filter(container__gone_since__isnull=True), "volume__name", names
                                     ).exclude(container__compose_project="").values_list("volume__name", "container__compose_project"):
            projects.setdefault(vname, set()).add(project)
    # An archive imported under a volume's name is not that volume's backup: it protects nothing.
    if names is None:
        last_success = dict(
            Backup.objects.filter(status=Backup.Status.SUCCEEDED, finished_at__isnull=False)
            .exclude(origin=Backup.Origin.IMPORTED).order_by().values("volume_name").annotate(last=Max("finished_at"))
            .values_list("volume_name", "last")
        )
    else:
        # A page's few names: read their backups by the volume_name index and take the
        # newest here. With the job's status in the WHERE clause SQLite walks every
        # succeeded job instead (30,000 of them, bench/many_hosts.py).
        last_success = {}
        for name, status, finished_at in (
            Backup.objects.filter(volume_name__in=names).exclude(origin=Backup.Origin.IMPORTED).order_by()
            .values_list("volume_name", "job__status", "job__finished_at")
        ):
            if status == Backup.Status.SUCCEEDED and finished_at is not None and (
                    name not in last_success or finished_at > last_success[name]):
                last_success[name] = finished_at
    last_runs = _latest_runs(names)
    from drills.services import failed_last, last_proven

    proven, drill_failed = last_proven(names), failed_last(names)

    out = {}
    for v in volumes:
        name = v["name"]
        p = Protection(volume=name, in_use=v["container_count"] > 0 and v["gone_since"] is None,
                       last_success_at=last_success.get(name), last_run=last_runs.get(name),
                       proven_at=proven.get(name), drill_failed=name in drill_failed)
        if v["gone_since"] is None:
            for policy, sel, allowed in policies:
                if not sel.matches(name, v["labels"] or {}, projects.get(name, set())):
                    continue
                p.policy_names.append(policy.name)
                p.policy_ids.append(policy.pk)
                since = [t for t in (policy.schedule_since or policy.created_at, v["first_seen_at"]) if t]
                reference = max([*since, *([p.last_success_at] if p.last_success_at else [])])
                if now - reference > allowed and not p.overdue:
                    p.overdue = True
                    if p.last_success_at:
                        p.overdue_detail = (f"The last successful backup of {name} finished "
                                            f"{_ago(now - p.last_success_at)} ago; policy {policy.name} expects one "
                                            f"every {_ago(allowed - _grace(policy))} (plus {_ago(_grace(policy))} grace).")
                    else:
                        p.overdue_detail = (f"{name} has had no successful backup since policy {policy.name} "
                                            f"began covering it {_ago(now - reference)} ago.")
        out[name] = p
    return out


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def protection_all(*, now: datetime | None = None) -> dict[str, Protection]:

    return protection_map(names=None, now=now)


@dataclass
class HealthSummary:
    volumes: int
    covered: int
    unprotected_in_use: list[Protection]
    failed: list[Protection]
    overdue: list[Protection]
    unprotected_unused: int
    policies: int
    proven: int = 0  # volumes a restore drill proved restorable
    drill_failed: list[Protection] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.unprotected_in_use) + len(self.failed) + len(self.overdue)


def health_summary(*, now: datetime | None = None) -> HealthSummary:
    protection = protection_all(now=now)
    values = sorted(protection.values(), key=lambda p: p.volume)
    return HealthSummary(
        volumes=len(values),
        covered=sum(1 for p in values if p.covered),
        unprotected_in_use=[p for p in values if p.state == "unprotected-in-use"],
        failed=[p for p in values if p.state == "failed"],
        overdue=[p for p in values if p.state == "overdue"],
        unprotected_unused=sum(1 for p in values if p.state == "unprotected"),
        policies=BackupPolicy.objects.filter(enabled=True).count(),
        proven=sum(1 for p in values if p.proven_at and not p.drill_failed),
        drill_failed=[p for p in values if p.drill_failed],
    )


@dataclass
class HealthFigures:
    """The overview's protection summary (what `health_summary` says), counted in SQL: the
    numbers of volumes in each state and the first few of each list by name."""

    volumes: int
    covered: int
    policies: int
    proven: int
    unprotected_unused: int
    n_unprotected_in_use: int
    n_failed: int
    n_overdue: int
    n_drill_failed: int
    unprotected_in_use: list[Protection]  # the first SHOWN of each, by name
    failed: list[Protection]
    overdue: list[Protection]

    @property
    def problems(self) -> int:
        return self.n_unprotected_in_use + self.n_failed + self.n_overdue


SHOWN = 10


def health_figures(*, now: datetime | None = None, who=None) -> HealthFigures:
    """health_summary's figures without loading every volume: one aggregate over the present
    volumes (each policy's selection and overdue rule as SQL conditions, the last successful
    backup as a correlated subquery), then protection_map for the few volumes listed. With
    10,000 volumes protection_all took most of a second (bench/many_hosts.py). `who` (a
    request or user): over their teams' volumes only (accounts.scoping); every enabled
    policy still counts as protection."""
    from django.db.models import BooleanField, Case, Count, Value, When

    from backups.models import Backup
    from drills.models import Drill
    from drills.services import failed_last
    from project.db import by_code_point
    from volumes.models import Volume

    now = now or timezone.now()
    # The names with a good backup since a time: one uncorrelated subquery per distinct time
    # (a correlated one per volume, joining backups to jobs, took minutes on PostgreSQL).
    good = (Backup.objects.filter(status=Backup.Status.SUCCEEDED, finished_at__isnull=False)
            .exclude(origin=Backup.Origin.IMPORTED).order_by())
    since_cut: dict = {}
    never = Q(pk__isnull=True)  # no policy matches
    covered, overdue, matches = never, never, {}
    enabled = 0
    for p in BackupPolicy.objects.filter(enabled=True):
        enabled += 1
        try:
            selection, allowed = p.selection, cron.max_interval(p.cron, p.timezone, now=now) + _grace(p)
        except CargoholdError:
            continue
        # Each selection is evaluated once per volume (a column of the inner query), then
        # combined by the outer one; CASE: a missing label is NULL in SQL, not false.
        key = f"_m{p.pk}"
        matches[key] = Case(When(selection_q(selection), then=Value(True)), default=Value(False),
                            output_field=BooleanField())
        match = Q(**{key: True})
        covered |= match
        # Overdue: the latest of (covered since, first seen, last success) is older than allowed.
        cut, since = now - allowed, p.schedule_since or p.created_at
        if since is None or since < cut:
            if cut not in since_cut:
                since_cut[cut] = f"_good{len(since_cut)}"
                matches[since_cut[cut]] = Case(
                    When(name__in=good.filter(finished_at__gte=cut).values("volume_name"), then=Value(True)),
                    default=Value(False), output_field=BooleanField())
            overdue |= match & (Q(first_seen_at__isnull=True) | Q(first_seen_at__lt=cut)) & Q(**{since_cut[cut]: False})

    # Failing: the latest ended run failed and no good backup since. Few rows: read them.
    ended = (PolicyRun.objects.filter(status__in=(PolicyRun.Status.SUCCEEDED, PolicyRun.Status.FAILED))
             .order_by().values("volume_name").annotate(last=Max("pk")).values("last"))
    failed_runs = dict(PolicyRun.objects.filter(pk__in=Subquery(ended), status=PolicyRun.Status.FAILED)
                       .select_related(None).order_by().values_list("volume_name", "finished_at"))
    good = {}
    for name, finished_at in (Backup.objects.filter(volume_name__in=list(failed_runs), status=Backup.Status.SUCCEEDED,
                                                    finished_at__isnull=False)
                              .exclude(origin=Backup.Origin.IMPORTED).order_by()
                              .values("volume_name").annotate(at=Max("finished_at")).values_list("volume_name", "at")):
        good[name] = finished_at
    failing = [n for n, at in failed_runs.items() if good.get(n) is None or at is None or good[n] < at]
    drill_failed = list(failed_last())

    def among(names) -> Q:
        return Q(name__in=names) if names else Q(pk__isnull=True)

    from accounts import scoping

    volumes = (Volume.objects if who is None else scoping.visible_volumes(who)).present().order_by().annotate(
        _proven=Case(When(name__in=Drill.objects.filter(status=Drill.Status.SUCCEEDED, finished_at__isnull=False)
                          .order_by().values("volume_name"), then=Value(True)),
                     default=Value(False), output_field=BooleanField()),
        **matches,
    )
    is_failed = covered & among(failing)
    is_overdue = covered & overdue & ~among(failing)
    in_use_uncovered = ~covered & Q(container_count__gt=0)
    n = volumes.aggregate(
        volumes=Count("pk"), covered=Count("pk", filter=covered),
        unprotected_unused=Count("pk", filter=~covered & Q(container_count=0)),
        n_unprotected_in_use=Count("pk", filter=in_use_uncovered),
        n_failed=Count("pk", filter=is_failed), n_overdue=Count("pk", filter=is_overdue),
        proven=Count("pk", filter=Q(_proven=True) & ~among(drill_failed)),
        n_drill_failed=Count("pk", filter=among(drill_failed)),
    )
    shown = {}
    for key, condition, count in (("unprotected_in_use", in_use_uncovered, n["n_unprotected_in_use"]),
                                  ("failed", is_failed, n["n_failed"]), ("overdue", is_overdue, n["n_overdue"])):
        shown[key] = list(volumes.filter(condition).order_by(by_code_point("name"))
                          .values_list("name", flat=True)[:SHOWN]) if count else []
    protection = protection_map(names=[name for names in shown.values() for name in names], now=now)
    return HealthFigures(policies=enabled, **n, **{k: [protection[name] for name in names] for k, names in shown.items()})


# --- notifications --------------------------------------------------------------------------


def notification_settings() -> NotificationSettings:
    return NotificationSettings.load()


def recent_deliveries(*, limit: int = 20) -> list[Delivery]:
    return list(Delivery.objects.select_related("notification")[:limit])
