"""Backup policies, the web side's front door: save, enable, delete, Run now.

All database-only (backups are queued as jobs, never run in the web process), audited.
The rest lives beside: schedules.py (beat's PeriodicTask per policy), runs.py (starting
runs and moving them on when their jobs end), pruning.py (applying retention),
monitoring.py (missed due times, overdue volumes, notifying outcomes).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import audit_record
from policies import runs, schedules
from policies.models import BackupPolicy, PolicyRun
from project.errors import Refused


def _policy_params(policy: BackupPolicy) -> dict:
    return {
        "name": policy.name, "selection": f"{policy.selector_kind}: {policy.selector_value}",
        "cron": policy.cron, "timezone": policy.timezone, "compression": policy.compression,
        "stop_containers": policy.stop_containers, "verify_after_backup": policy.verify_after_backup,
        "enabled": policy.enabled, "retention": policy.rules.describe(),
        "overdue_grace_minutes": policy.overdue_grace_minutes,
        "repository": policy.repository.name if policy.repository_id else "(default)",
        "copy_to": policy.copy_to.name if policy.copy_to_id else "",
    }


def policy_save(*, policy: BackupPolicy, user=None, request=None) -> BackupPolicy:
    """Create or update a policy and its beat schedule in one transaction (audited).

    Changing the schedule or enabling the policy restarts missed-run detection and the
    overdue clock from now: due times before the change are not "missed".
    """
    schedules.policy_validate(policy)
    now = timezone.now()
    creating = policy.pk is None
    with transaction.atomic():
        schedule_changed = creating
        if not creating:
            old = BackupPolicy.objects.filter(pk=policy.pk).first()
            if old is None:
                raise Refused("That policy no longer exists.")
            schedule_changed = (
                (old.cron, old.timezone) != (policy.cron, policy.timezone) or (policy.enabled and not old.enabled)
            )
        else:
            policy.created_by = user if (user is not None and user.is_authenticated) else None
        if schedule_changed:
            policy.schedule_checked_until = now
            policy.schedule_since = now
        try:
            with transaction.atomic():
                policy.save()
        except IntegrityError:
            raise Refused(f"A policy named {policy.name!r} already exists.") from None
        schedules.schedule_sync(policy=policy, schedule_changed=schedule_changed, now=now)
        audit_record(
            action="policy_create" if creating else "policy_update", actor=user, request=request,
            object_type="policy", object_name=policy.name, params=_policy_params(policy),
        )
    return policy


def policy_set_enabled(*, policy: BackupPolicy, enabled: bool, user=None, request=None) -> BackupPolicy:
    policy.enabled = enabled
    return policy_save(policy=policy, user=user, request=request)


def policy_delete(*, policy: BackupPolicy, user=None, request=None) -> None:
    """Remove the policy, its schedule and its run history. Its backups stay (they are
    then nobody's to prune: delete them by hand if you want them gone)."""
    params = _policy_params(policy)
    with transaction.atomic():
        schedules.schedule_delete(policy=policy)
        policy.delete()
        audit_record(action="policy_delete", actor=user, request=request, object_type="policy",
                     object_name=params["name"], params=params)


def policy_run_now(
    *, policy: BackupPolicy, user=None, request=None, trigger: str = PolicyRun.Trigger.MANUAL, actor_name: str = "",
) -> list[PolicyRun]:
    """The Run now button and `manage.py run_policy`: a run outside the schedule."""
    now = timezone.now()
    started = runs.policy_run(policy=policy, scheduled_for=now, trigger=trigger, user=user)
    audit_record(
        action="policy_run", actor=user, request=request, actor_name=actor_name, object_type="policy",
        object_name=policy.name,
        params={"trigger": trigger, "runs": [r.pk for r in started],
                "volumes": [r.volume_name for r in started if r.volume_name]},
    )
    return started
