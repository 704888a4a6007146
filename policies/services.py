"""Backup policies: save them (keeping beat's schedule in step), run them, follow their
runs to the end, prune by the retention rules, and watch for missed and overdue backups.

Who calls what:
- pages: `policy_save`, `policy_set_enabled`, `policy_delete`, `policy_run` ("Run now");
  all database-only (backups are queued as jobs, never run in the web process);
- beat, through `tasks.policy_due`: `policy_tick` when a policy's cron comes due;
- the worker, through `tasks.follow_runs` (after every backup job and periodically) and
  `tasks.check_policies` (periodically): `runs_follow` and `policies_check`.

Nothing here trusts that a process survives: a run's state is derived from its backup
and job rows each time it is followed, every transition is a conditional UPDATE (two
followers never act twice), and a run row is unique per policy, volume and due time, so
a tick delivered twice starts one backup.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import audit_record
from policies import cron, retention, selection
from policies.models import BackupPolicy, PolicyRun, VolumeAlert
from project.errors import CargoholdError, Refused

logger = logging.getLogger(__name__)

TICK_TASK = "policies.tasks.policy_due"
# A run that never got its backup row (cannot normally happen: both are written in one
# transaction) is given up after this.
LOST_RUN_AFTER = timedelta(minutes=10)
# A prune claimed by a worker that died is handed to the next follower after this.
PRUNE_STALE_AFTER = timedelta(minutes=15)
# Outcomes older than this are not notified (a first deployment over an old history).
NOTIFY_WINDOW = timedelta(hours=24)


def _policy_params(policy: BackupPolicy) -> dict:
    return {
        "name": policy.name, "selection": f"{policy.selector_kind}: {policy.selector_value}",
        "cron": policy.cron, "timezone": policy.timezone, "compression": policy.compression,
        "stop_containers": policy.stop_containers, "verify_after_backup": policy.verify_after_backup,
        "enabled": policy.enabled, "retention": policy.rules.describe(),
        "overdue_grace_minutes": policy.overdue_grace_minutes,
    }


# --- saving, and beat's schedule ------------------------------------------------------


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


def _sync_periodic_task(policy: BackupPolicy, *, schedule_changed: bool, now: datetime) -> None:
    """Create or update the PeriodicTask beat's DatabaseScheduler reads for this policy.
    Saving it bumps django-celery-beat's change marker: a running beat reloads within
    its loop interval (5 s), no restart."""
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


def policy_save(*, policy: BackupPolicy, user=None, request=None) -> BackupPolicy:
    """Create or update a policy and its beat schedule in one transaction (audited).

    Changing the schedule or enabling the policy restarts missed-run detection and the
    overdue clock from now: due times before the change are not "missed".
    """
    policy_validate(policy)
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
        _sync_periodic_task(policy, schedule_changed=schedule_changed, now=now)
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
    from django_celery_beat.models import PeriodicTask

    params = _policy_params(policy)
    with transaction.atomic():
        PeriodicTask.objects.filter(name=policy.periodic_task_name).delete()
        policy.delete()
        audit_record(action="policy_delete", actor=user, request=request, object_type="policy",
                     object_name=params["name"], params=params)


def policies_resync_schedules() -> int:
    """Recreate every policy's PeriodicTask (after restoring a database, or by hand)."""
    now = timezone.now()
    count = 0
    for policy in BackupPolicy.objects.all():
        _sync_periodic_task(policy, schedule_changed=False, now=now)
        count += 1
    return count


# --- running ----------------------------------------------------------------------------


def _end(run_id: int, status: str, message: str = "", **fields) -> bool:
    """Move an active run to its end state, once (False if someone else did)."""
    updates = {"status": status, "finished_at": fields.pop("finished_at", None) or timezone.now(), **fields}
    if message:
        updates["message"] = message[:4000]
    return bool(PolicyRun.objects.filter(pk=run_id, status__in=PolicyRun.ACTIVE).update(**updates))


def policy_run(
    *, policy: BackupPolicy, scheduled_for: datetime, trigger: str = PolicyRun.Trigger.SCHEDULE, user=None,
) -> list[PolicyRun]:
    """Start one run of the policy: a backup of each volume it selects now.

    Database-only (the backups are queued jobs). A volume whose previous run of this
    policy is still queued or running gets a `skipped` run instead of a second backup.
    Safe to call twice for the same due time: the second call starts nothing.
    """
    from backups.models import Backup
    from backups.services import backup_start

    try:
        names = selection.selected_volume_names(policy.selection)
    except CargoholdError as exc:
        run, _ = _run_once(policy, "", scheduled_for, trigger, status=PolicyRun.Status.FAILED,
                           message=f"The selection is not valid: {exc}")
        return [run] if run else []
    if not names:
        run, _ = _run_once(policy, "", scheduled_for, trigger, status=PolicyRun.Status.SKIPPED,
                           message=f"No volume matches the selection ({policy.selection.describe()}).")
        return [run] if run else []
    runs_follow(policy=policy, prune=False, notify=False)  # so "still active" is current
    job_trigger = {"schedule": "schedule", "cli": "cli"}.get(trigger, "user")
    started = []
    for name in names:
        try:
            with transaction.atomic():
                active = (
                    PolicyRun.objects.filter(policy=policy, volume_name=name, status__in=PolicyRun.ACTIVE)
                    .exclude(scheduled_for=scheduled_for).order_by("scheduled_for").first()
                )
                if active is not None:
                    run = PolicyRun.objects.create(
                        policy=policy, volume_name=name, scheduled_for=scheduled_for, trigger=trigger,
                        status=PolicyRun.Status.SKIPPED, finished_at=timezone.now(),
                        message=f"Skipped: the run due {_fmt(active.scheduled_for, policy)} (#{active.pk}) "
                                f"is still {active.status}.",
                    )
                else:
                    run = PolicyRun.objects.create(
                        policy=policy, volume_name=name, scheduled_for=scheduled_for, trigger=trigger,
                    )
                    try:
                        with transaction.atomic():
                            backup = backup_start(
                                volume_name=name, user=user, trigger=job_trigger, origin=Backup.Origin.SCHEDULE,
                                stop_containers=True if policy.stop_containers else None,
                                compression=policy.compression,
                            )
                    except CargoholdError as exc:
                        run.status = PolicyRun.Status.FAILED
                        run.finished_at = timezone.now()
                        run.message = str(exc)[:4000]
                    else:
                        run.backup, run.backup_ref, run.job_id = backup, backup.pk, backup.job_id
                    run.save()
        except IntegrityError:
            continue  # this due time was already handled for this volume (a repeated tick)
        started.append(run)
    return started


def _run_once(policy, volume_name, scheduled_for, trigger, *, status, message) -> tuple[PolicyRun | None, bool]:
    try:
        with transaction.atomic():
            return PolicyRun.objects.create(
                policy=policy, volume_name=volume_name, scheduled_for=scheduled_for, trigger=trigger,
                status=status, message=message[:4000], finished_at=timezone.now(),
            ), True
    except IntegrityError:
        return None, False


def _fmt(when: datetime, policy: BackupPolicy) -> str:
    try:
        return when.astimezone(cron.zone(policy.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    except CargoholdError:
        return when.strftime("%Y-%m-%d %H:%M UTC")


def policy_tick(*, policy_id: int, now: datetime | None = None) -> list[PolicyRun]:
    """Beat says the policy is due: run it for the due time that just passed (worker side).

    The due time is computed from the clock (a tick expires before the next due time,
    so it is always this one); refreshing the mirror first lets volumes created a moment
    ago be picked up. Running it twice for one due time starts each backup once.
    """
    policy = BackupPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        logger.warning("policy %s is gone; its schedule is stale", policy_id)
        return []
    if not policy.enabled:
        return []
    now = now or timezone.now()
    due = cron.previous_run(policy.cron, policy.timezone, at=now + timedelta(seconds=2))
    if PolicyRun.objects.filter(policy=policy, scheduled_for=due).exists():
        # A repeated tick (beat restarted, a message delivered again): the unique rows
        # make it start nothing twice, and it completes a tick a dead worker left half done.
        logger.info("policy %s: the run due %s was already started", policy.name, due)
    from volumes.services import mirror_sync_quietly

    mirror_sync_quietly()
    return policy_run(policy=policy, scheduled_for=due, trigger=PolicyRun.Trigger.SCHEDULE)


def policy_run_now(
    *, policy: BackupPolicy, user=None, request=None, trigger: str = PolicyRun.Trigger.MANUAL, actor_name: str = "",
) -> list[PolicyRun]:
    """The Run now button and `manage.py run_policy`: a run outside the schedule."""
    now = timezone.now()
    runs = policy_run(policy=policy, scheduled_for=now, trigger=trigger, user=user)
    audit_record(
        action="policy_run", actor=user, request=request, actor_name=actor_name, object_type="policy",
        object_name=policy.name,
        params={"trigger": trigger, "runs": [r.pk for r in runs],
                "volumes": [r.volume_name for r in runs if r.volume_name]},
    )
    return runs


# --- following runs to their end ----------------------------------------------------------


def _follow_one(run: PolicyRun) -> None:
    from backups.models import Backup
    from backups.services import backup_sync_with_job, backup_verify_start

    backup = run.backup
    if backup is None:
        if run.backup_ref:
            _end(run.pk, PolicyRun.Status.FAILED, f"Backup #{run.backup_ref} was deleted before the run ended.")
        elif timezone.now() - run.created_at > LOST_RUN_AFTER:
            _end(run.pk, PolicyRun.Status.FAILED, "The run never got its backup (lost).")
        return
    if backup.status in Backup.ACTIVE and backup.job_id:
        # The job ended without running the backup (cancelled while queued, worker lost).
        backup_sync_with_job(job_id=backup.job_id)
        backup.refresh_from_db()
    if backup.status == Backup.Status.QUEUED:
        return
    if backup.status == Backup.Status.RUNNING:
        PolicyRun.objects.filter(pk=run.pk, status=PolicyRun.Status.QUEUED).update(
            status=PolicyRun.Status.RUNNING, started_at=backup.started_at or timezone.now()
        )
        return
    started = {"started_at": run.started_at or backup.started_at or backup.created_at}
    if backup.status != Backup.Status.SUCCEEDED:
        _end(run.pk, PolicyRun.Status.FAILED, backup.error or f"The backup was {backup.status}.",
             finished_at=backup.finished_at, **started)
        return
    if run.policy.verify_after_backup:
        if run.verify_job_id is None:
            with transaction.atomic():
                claimed = PolicyRun.objects.filter(
                    pk=run.pk, status__in=PolicyRun.ACTIVE, verify_job__isnull=True
                ).update(status=PolicyRun.Status.RUNNING, message="Verifying the stored archive.", **started)
                if claimed:
                    try:
                        job = backup_verify_start(backup=backup, trigger="schedule")
                    except CargoholdError as exc:
                        _end(run.pk, PolicyRun.Status.FAILED, f"Could not verify the backup: {exc}")
                    else:
                        PolicyRun.objects.filter(pk=run.pk).update(verify_job=job)
            return
        job = run.verify_job
        if job is None:  # the job row was removed: verify the row's own flag
            ok, error = backup.verified, backup.verify_error
        elif job.is_active:
            return
        else:
            ok, error = job.status == job.Status.SUCCEEDED, job.error
        if not ok:
            _end(run.pk, PolicyRun.Status.FAILED, f"The backup was made but its verification failed: {error}",
                 **started)
            return
    size = backup.size_bytes
    _end(
        run.pk, PolicyRun.Status.SUCCEEDED,
        f"Backup #{backup.pk}" + (f", {size} bytes stored" if size is not None else "")
        + (", verified again" if run.policy.verify_after_backup else "") + ".",
        finished_at=timezone.now() if run.policy.verify_after_backup else backup.finished_at,
        prune_state=PolicyRun.Prune.PENDING, **started,
    )


def runs_follow(*, policy: BackupPolicy | None = None, prune: bool = True, notify: bool = True) -> None:
    """Bring active runs up to date from their backups and jobs; then (worker side)
    prune after the runs that succeeded, and hand new outcomes to notifications.
    Idempotent; safe beside another follower."""
    qs = PolicyRun.objects.filter(status__in=PolicyRun.ACTIVE).select_related(
        "policy", "backup", "verify_job"
    )
    if policy is not None:
        qs = qs.filter(policy=policy)
    for run in qs:
        try:
            _follow_one(run)
        except Exception:
            logger.exception("following policy run %s failed", run.pk)
    if prune:
        runs_prune_pending()
    if notify:
        runs_notify_outcomes()


# --- retention -------------------------------------------------------------------------------


@dataclass
class PruneOutcome:
    volume_name: str
    plan: retention.Plan
    deleted: list[dict] = field(default_factory=list)
    error: str = ""

    @property
    def message(self) -> str:
        if self.error:
            return self.error
        if self.plan.refused:
            return self.plan.refused
        if self.deleted:
            return f"Deleted {len(self.deleted)} backup{'s' if len(self.deleted) != 1 else ''}: " + ", ".join(
                f"#{d['id']}" for d in self.deleted)
        return "Nothing to delete."


def owned_backup_ids(*, policy: BackupPolicy, volume_name: str | None = None) -> set[int]:
    qs = PolicyRun.objects.filter(policy=policy, backup_ref__isnull=False)
    if volume_name is not None:
        qs = qs.filter(volume_name=volume_name)
    return set(qs.values_list("backup_ref", flat=True))


def retention_records(*, policy: BackupPolicy, volume_name: str) -> list[retention.Record]:
    """Every backup of the volume as retention sees it (owned: made by this policy)."""
    from backups.models import Backup

    owned = owned_backup_ids(policy=policy, volume_name=volume_name)
    return [
        retention.Record(
            id=b.pk, at=b.finished_at or b.created_at, status=b.status, origin=b.origin, keep=b.keep,
            verified=b.verified and not b.missing, owned=b.pk in owned, key=b.key,
        )
        for b in Backup.objects.filter(volume_name=volume_name).only(
            "pk", "finished_at", "created_at", "status", "origin", "keep", "verified", "missing", "key"
        )
    ]


def retention_apply(
    *, policy: BackupPolicy, volume_name: str, now: datetime | None = None, dry_run: bool = False,
    new_backup_succeeded: bool = True, run: PolicyRun | None = None, records: list | None = None,
) -> PruneOutcome:
    """Delete the policy's backups of one volume that its rules no longer keep.

    Worker side (it lists and deletes in storage). Refuses as a whole (deletes nothing)
    on any safety rule; stops at the first storage error. Every deletion goes through
    `backups.services.backup_delete` (archive and manifest, audited) and is audited
    again as a retention decision with its policy and reasons.
    """
    from backups.models import Backup
    from backups.services import backup_delete
    from backups.storage import get_storage

    now = now or timezone.now()
    tz = cron.zone(policy.timezone)
    if records is None:
        records = retention_records(policy=policy, volume_name=volume_name)
    if dry_run:
        return PruneOutcome(volume_name, retention.preview(records, policy.rules, now=now, tz=tz))
    keys: set[str] | None
    error = ""
    try:
        keys = set(get_storage().list_keys(prefix=f"{volume_name}/"))
    except Exception as exc:  # whatever the backend raises: the listing failed, delete nothing
        keys, error = None, f"The backup storage could not be listed: {exc}"
    plan = retention.plan(records, policy.rules, now=now, tz=tz, new_backup_succeeded=new_backup_succeeded,
                          storage_keys=keys)
    outcome = PruneOutcome(volume_name, plan, error=error)
    if plan.refused:
        logger.warning("policy %s, volume %s: %s", policy.name, volume_name, plan.refused)
    for record in plan.delete:
        backup = Backup.objects.filter(pk=record.id).first()
        # Re-read: someone may have marked it "keep" since the plan was made.
        if backup is None or backup.keep or backup.origin != Backup.Origin.SCHEDULE \
                or backup.status != Backup.Status.SUCCEEDED:
            continue
        reasons = {"policy": policy.name, "volume": volume_name, "taken_at": record.at.isoformat(),
                   "key": backup.key, "rules": policy.rules.describe(), "run": run.pk if run else None}
        try:
            backup_delete(backup=backup, user=None)
        except CargoholdError as exc:
            outcome.error = f"Stopped pruning: backup #{record.id} could not be deleted: {exc}"
            audit_record(action="retention_delete", actor_name=f"policy:{policy.name}"[:150],
                         object_type="backup", object_name=str(record.id), params=reasons,
                         result="error", error=str(exc))
            break
        audit_record(action="retention_delete", actor_name=f"policy:{policy.name}"[:150],
                     object_type="backup", object_name=str(record.id), params=reasons)
        outcome.deleted.append({"id": record.id, "at": record.at.isoformat(), "key": reasons["key"]})
    return outcome


def runs_prune_pending() -> None:
    """Prune after each successful run (worker side), each run once.

    A prune claimed by a worker that died is released after PRUNE_STALE_AFTER.
    """
    now = timezone.now()
    PolicyRun.objects.filter(prune_state=PolicyRun.Prune.RUNNING, prune_started_at__lt=now - PRUNE_STALE_AFTER) \
        .update(prune_state=PolicyRun.Prune.PENDING)
    for run in PolicyRun.objects.filter(prune_state=PolicyRun.Prune.PENDING).select_related("policy") \
            .order_by("finished_at"):
        if not PolicyRun.objects.filter(pk=run.pk, prune_state=PolicyRun.Prune.PENDING).update(
            prune_state=PolicyRun.Prune.RUNNING, prune_started_at=timezone.now()
        ):
            continue
        try:
            outcome = retention_apply(policy=run.policy, volume_name=run.volume_name, run=run)
        except Exception as exc:
            logger.exception("pruning after policy run %s failed", run.pk)
            state, message, deleted = PolicyRun.Prune.FAILED, f"Pruning failed: {exc}", []
        else:
            deleted = outcome.deleted
            if outcome.error:
                state = PolicyRun.Prune.FAILED
            elif outcome.plan.refused:
                state = PolicyRun.Prune.REFUSED
            else:
                state = PolicyRun.Prune.DONE
            message = outcome.message
        PolicyRun.objects.filter(pk=run.pk).update(
            prune_state=state, pruned_at=timezone.now(), prune_deleted=deleted, prune_message=message[:4000]
        )


def policy_apply_retention(*, policy: BackupPolicy, dry_run: bool = False) -> list[PruneOutcome]:
    """`manage.py apply_retention`: prune every volume the policy has backups of, except
    a volume whose latest finished run of this policy failed (never prune after a
    failure: a good backup must come first)."""
    outcomes = []
    volumes = sorted(set(
        PolicyRun.objects.filter(policy=policy, backup_ref__isnull=False).values_list("volume_name", flat=True)
    ))
    for name in volumes:
        last = (
            PolicyRun.objects.filter(policy=policy, volume_name=name,
                                     status__in=(PolicyRun.Status.SUCCEEDED, PolicyRun.Status.FAILED))
            .order_by("-finished_at", "-pk").first()
        )
        succeeded = last is None or last.status == PolicyRun.Status.SUCCEEDED
        if dry_run:
            outcomes.append(retention_apply(policy=policy, volume_name=name, dry_run=True))
        else:
            outcomes.append(retention_apply(policy=policy, volume_name=name, new_backup_succeeded=succeeded))
    return outcomes


# --- missed runs, overdue volumes --------------------------------------------------------------


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
                message = f"Missed: due {_fmt(first, policy)}, but no run started (was celery beat or the worker down?)."
            else:
                message = (f"Missed {len(group)} due times from {_fmt(first, policy)} to {_fmt(last, policy)} "
                           f"(was celery beat or the worker down?).")
            run, created = _run_once(policy, "", first, PolicyRun.Trigger.SCHEDULE, status=PolicyRun.Status.MISSED,
                                     message=message)
            if created:
                recorded.append(run)
                logger.warning("policy %s: %s", policy.name, message)
    return recorded


def volumes_check_overdue(*, now: datetime | None = None) -> list[str]:
    """Open an alert (notified once) for each covered volume that became overdue; close
    the alerts of volumes that are fine again. Returns the names newly alerted."""
    from policies import notify, selectors
    from policies.models import Notification

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
    from policies import notify
    from policies.models import Notification

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
            text=f"Policy {run.policy.name}, volume {what}, due {_fmt(run.scheduled_for, run.policy)}: "
                 f"{run.status}.\n{run.message}",
            payload={"policy": run.policy.name, "volume": run.volume_name, "status": run.status,
                     "run": run.pk, "scheduled_for": run.scheduled_for.isoformat(), "message": run.message,
                     "backup": run.backup_ref},
        )


def policies_check(*, now: datetime | None = None) -> None:
    """The periodic check (beat, every POLICY_CHECK_SECONDS): follow runs, prune, record
    missed due times, open overdue alerts, re-send stuck notifications. Each step is
    isolated: one failing does not stop the others."""
    from policies import notify

    for step in (runs_follow, lambda: policies_detect_missed(now=now), lambda: volumes_check_overdue(now=now),
                 runs_notify_outcomes, notify.deliveries_requeue_stuck):
        try:
            step()
        except Exception:
            logger.exception("policy check step %s failed", getattr(step, "__name__", step))

