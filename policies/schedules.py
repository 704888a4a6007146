"""Beat's side of policies: each policy's PeriodicTask, kept in step with the policy.

django-celery-beat's DatabaseScheduler reads these rows; saving one bumps its change
marker, so a running beat picks an edit up within its loop interval (no restart).
"""

from __future__ import annotations

import json
from datetime import datetime

from django.utils import timezone

from policies import cron, selection
from policies.models import BackupPolicy
from project.errors import Refused

TICK_TASK = "policies.tasks.policy_due"


def policy_validate(policy: BackupPolicy) -> None:
    """The rules a policy must satisfy wherever it comes from (form, CLI, shell)."""
    parsed = cron.parse(policy.cron)
    policy.cron = parsed.expression
    cron.zone(policy.timezone)
    selection.parse(policy.selector_kind, policy.selector_value)
    if not policy.rules.keeps_something:
        raise Refused("The retention rules keep nothing: set at least one of keep last, daily, weekly, "
                      "monthly, yearly or max age.")
    if policy.compression not in BackupPolicy.Compression.values:
        raise Refused(f"Unknown compression {policy.compression!r}.")


def _expire_seconds(policy: BackupPolicy, now: datetime) -> int:
    """A tick not started before the next due time would be counted against the wrong
    due time: it expires a little before (and is then reported as missed)."""
    gap = cron.min_interval(policy.cron, policy.timezone, now=now).total_seconds()
    return int(max(20, min(gap - 5, 6 * 3600)))


def schedule_sync(*, policy: BackupPolicy, schedule_changed: bool, now: datetime) -> None:
    """Create or update the PeriodicTask beat reads for this policy."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    c = cron.parse(policy.cron)
    fields = {
        "minute": c.minute, "hour": c.hour, "day_of_month": c.day_of_month,
        "month_of_year": c.month_of_year, "day_of_week": c.day_of_week, "timezone": policy.timezone,
    }
    schedule = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    if schedule is None:
        schedule = CrontabSchedule.objects.create(**fields)
    defaults = {
        "task": TICK_TASK, "crontab": schedule, "interval": None, "solar": None, "clocked": None,
        "args": json.dumps([policy.pk]), "kwargs": "{}", "enabled": policy.enabled, "one_off": False,
        "expire_seconds": _expire_seconds(policy, now), "expires": None,
        "description": f"Backup policy {policy.name}",
    }
    if schedule_changed:
        # Otherwise beat compares the new schedule with the old one's last run and
        # fires at once ("catching up" a due time the new schedule never had).
        defaults["last_run_at"] = None
    PeriodicTask.objects.update_or_create(name=policy.periodic_task_name, defaults=defaults)


def schedule_delete(*, policy: BackupPolicy) -> None:
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(name=policy.periodic_task_name).delete()


def policies_resync_schedules() -> int:
    """Recreate every policy's PeriodicTask (after restoring a database, or by hand)."""
    now = timezone.now()
    count = 0
    for policy in BackupPolicy.objects.all():
        schedule_sync(policy=policy, schedule_changed=False, now=now)
        count += 1
    return count
