"""Watching the policies: due times that passed without a run, covered volumes that are
overdue, and handing each run's outcome to notifications once. Worker side (the
periodic check, `tasks.check_policies`, and the job_ended receiver in policies.runs)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from policies import cron, notify
from policies.models import BackupPolicy, Notification, PolicyRun, VolumeAlert
from policies.runs import due_text, run_record_outcome
from project.errors import CargoholdError

logger = logging.getLogger(__name__)

# Outcomes older than this are not notified (a first deployment over an old history).
NOTIFY_WINDOW = timedelta(hours=24)


def policies_detect_missed(*, now: datetime | None = None) -> list[PolicyRun]:
    """Record due times that passed without a run (beat or the workers were down).

    Each enabled policy's due times between its watermark and now minus a grace period
    are checked once (the watermark moves by a conditional update, so two checkers never
    both record). Consecutive missed due times make one row that counts them.
    """
    now = now or timezone.now()
    end = now - timedelta(seconds=settings.POLICY_MISSED_GRACE_SECONDS)
    recorded = []
    for policy in BackupPolicy.objects.filter(enabled=True):
        start = policy.schedule_checked_until or policy.schedule_since or policy.created_at
        if end <= start:
            continue
        if not BackupPolicy.objects.filter(pk=policy.pk, schedule_checked_until=policy.schedule_checked_until) \
                .update(schedule_checked_until=end):
            continue
        try:
            dues = cron.due_between(policy.cron, policy.timezone, start=start, end=end, limit=100_000)
        except CargoholdError:
            continue
        if not dues:
            continue
        have = set(
            PolicyRun.objects.filter(policy=policy, scheduled_for__gt=start, scheduled_for__lte=end)
            .values_list("scheduled_for", flat=True)
        )
        groups: list[list[datetime]] = []
        for t in dues:
            if t in have:
                if groups and groups[-1]:
                    groups.append([])
                continue
            if not groups:
                groups.append([])
            groups[-1].append(t)
        for group in (g for g in groups if g):
            first, last = group[0], group[-1]
            if len(group) == 1:
                message = (f"Missed: due {due_text(first, policy)}, but no run started "
                           "(was celery beat or the worker down?).")
            else:
                message = (f"Missed {len(group)} due times from {due_text(first, policy)} to "
                           f"{due_text(last, policy)} (was celery beat or the worker down?).")
            run = run_record_outcome(policy=policy, volume_name="", scheduled_for=first,
                                     trigger=PolicyRun.Trigger.SCHEDULE, outcome=PolicyRun.Status.MISSED,
                                     message=message)
            if run is not None:
                recorded.append(run)
                logger.warning("policy %s: %s", policy.name, message)
    return recorded


def volumes_check_overdue(*, now: datetime | None = None) -> list[str]:
    """Open an alert (notified once) for each covered volume that became overdue; close
    the alerts of volumes that are fine again. Returns the names newly alerted."""
    from policies import selectors

    now = now or timezone.now()
    protection = selectors.protection_all(now=now)
    open_alerts = {a.volume_name: a for a in VolumeAlert.objects.filter(kind="overdue", closed_at__isnull=True)}
    opened = []
    for name, p in protection.items():
        if not p.overdue or name in open_alerts:
            continue
        try:
            with transaction.atomic():
                VolumeAlert.objects.create(volume_name=name, kind="overdue", detail=p.overdue_detail)
        except IntegrityError:
            continue
        opened.append(name)
        notify.notify(
            event=Notification.Event.VOLUME_OVERDUE,
            subject=f"Volume {name} is overdue for a backup",
            text=f"{p.overdue_detail}\nPolicies: {', '.join(p.policy_names)}.",
            payload={"volume": name, "policies": p.policy_names,
                     "last_success_at": p.last_success_at.isoformat() if p.last_success_at else None},
        )
    for name, alert in open_alerts.items():
        p = protection.get(name)
        if p is None or not p.overdue:
            VolumeAlert.objects.filter(pk=alert.pk, closed_at__isnull=True).update(closed_at=now)
    return opened


def runs_notify_outcomes() -> None:
    """Hand each recently ended run to notifications once: failures (and missed due
    times) always, successes when opted in (the settings decide)."""
    cutoff = timezone.now() - NOTIFY_WINDOW
    qs = PolicyRun.objects.filter(
        notified=False, finished_at__gte=cutoff,
        status__in=(PolicyRun.Status.FAILED, PolicyRun.Status.MISSED, PolicyRun.Status.SUCCEEDED),
    ).select_related("policy")
    for run in qs:
        if not PolicyRun.objects.filter(pk=run.pk, notified=False).update(notified=True):
            continue
        ok = run.status == PolicyRun.Status.SUCCEEDED
        what = run.volume_name or "(all volumes)"
        notify.notify(
            event=Notification.Event.RUN_SUCCEEDED if ok else Notification.Event.RUN_FAILED,
            subject=(f"Backup policy {run.policy.name}: {what} {run.status}"),
            text=f"Policy {run.policy.name}, volume {what}, due {due_text(run.scheduled_for, run.policy)}: "
                 f"{run.status}.\n{run.message}",
            payload={"policy": run.policy.name, "volume": run.volume_name, "status": run.status,
                     "run": run.pk, "scheduled_for": run.scheduled_for.isoformat(), "message": run.message,
                     "backup": run.backup_ref},
        )


def policies_check(*, now: datetime | None = None) -> None:
    """The periodic check (beat, every POLICY_CHECK_SECONDS): follow runs a lost job_ended
    signal left waiting, prune, record missed due times, open overdue alerts, re-send
    stuck notifications. Each step is isolated: one failing does not stop the others."""
    from policies import pruning, runs

    for step in (runs.runs_follow, pruning.runs_prune_pending, lambda: policies_detect_missed(now=now),
                 lambda: volumes_check_overdue(now=now), runs_notify_outcomes, notify.deliveries_requeue_stuck):
        try:
            step()
        except Exception:
            logger.exception("policy check step %s failed", getattr(step, "__name__", step))
