"""Policy runs: start them (a tick, Run now, the CLI) and move them on when their
backup's job (or verify job) ends.

A run's state is its jobs' (see PolicyRun): nothing here copies a status. Runs move on
from the `jobs.signals.job_ended` signal, in the worker that ended the job: a backup
that succeeded gets its verify job (when the policy asks for one), then the run is
marked for pruning and handed to notifications. `runs_follow` does the same for every
run that still waits, from the periodic check: the safety net for a signal that was
lost (a process that died between ending a job and sending the signal).

Nothing here trusts that a process survives: every transition is a conditional UPDATE
(two followers never act twice), and a run row is unique per policy, volume and due
time, so a tick delivered twice starts one backup.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from policies import cron, selection
from policies.models import BackupPolicy, PolicyRun
from project.errors import CargoholdError

logger = logging.getLogger(__name__)

# A run that never got its backup's job (cannot normally happen: both are written in
# one transaction) is given up after this.
LOST_RUN_AFTER = timedelta(minutes=10)


def due_text(when: datetime, policy: BackupPolicy) -> str:
    """A due time as the policy's people read it (in its time zone)."""
    try:
        return when.astimezone(cron.zone(policy.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    except CargoholdError:
        return when.strftime("%Y-%m-%d %H:%M UTC")


def run_record_outcome(
    *, policy: BackupPolicy, volume_name: str, scheduled_for: datetime, trigger: str, outcome: str, message: str,
) -> PolicyRun | None:
    """A run that ends as it is recorded (skipped, missed, could not start); None when
    that due time already has its run (a repeated tick, a second checker)."""
    try:
        with transaction.atomic():
            return PolicyRun.objects.create(
                policy=policy, volume_name=volume_name, scheduled_for=scheduled_for, trigger=trigger,
                outcome=outcome, outcome_message=message[:4000], outcome_at=timezone.now(),
            )
    except IntegrityError:
        return None


def _end_own(run_id: int, outcome: str, message: str) -> bool:
    """Give a run that still follows its jobs an outcome of its own, once."""
    return bool(PolicyRun.objects.filter(pk=run_id, outcome="").update(
        outcome=outcome, outcome_message=message[:4000], outcome_at=timezone.now()
    ))


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

    def whole_policy(outcome: str, message: str) -> list[PolicyRun]:
        run = run_record_outcome(policy=policy, volume_name="", scheduled_for=scheduled_for, trigger=trigger,
                                 outcome=outcome, message=message)
        return [run] if run else []

    try:
        names = selection.selected_volume_names(policy.selection)
    except CargoholdError as exc:
        return whole_policy(PolicyRun.Status.FAILED, f"The selection is not valid: {exc}")
    if not names:
        return whole_policy(PolicyRun.Status.SKIPPED,
                            f"No volume matches the selection ({policy.selection.describe()}).")
    # "Still active" needs no following first: a run's status is read from its jobs.
    job_trigger = {"schedule": "schedule", "cli": "cli"}.get(trigger, "user")
    started = []
    for name in names:
        try:
            with transaction.atomic():
                active = (
                    PolicyRun.objects.filter(policy=policy, volume_name=name, status__in=PolicyRun.ACTIVE)
                    .exclude(scheduled_for=scheduled_for).order_by("scheduled_for").first()
                )
                run = PolicyRun(policy=policy, volume_name=name, scheduled_for=scheduled_for, trigger=trigger,
                                verify_wanted=policy.verify_after_backup)
                if active is not None:
                    run.outcome, run.outcome_at = PolicyRun.Status.SKIPPED, timezone.now()
                    run.outcome_message = (f"Skipped: the run due {due_text(active.scheduled_for, policy)} "
                                           f"(#{active.pk}) is still {active.status}.")
                    run.save()
                else:
                    run.save()
                    try:
                        with transaction.atomic():
                            backup = backup_start(
                                volume_name=name, user=user, trigger=job_trigger, origin=Backup.Origin.SCHEDULE,
                                stop_containers=True if policy.stop_containers else None,
                                compression=policy.compression, repository=policy.repository,
                            )
                    except CargoholdError as exc:
                        run.outcome, run.outcome_at = PolicyRun.Status.FAILED, timezone.now()
                        run.outcome_message = str(exc)[:4000]
                    else:
                        run.backup, run.backup_ref, run.job_id = backup, backup.pk, backup.job_id
                    run.save()
        except IntegrityError:
            continue  # this due time was already handled for this volume (a repeated tick)
        started.append(run.pk)
    return list(PolicyRun.objects.filter(pk__in=started).order_by("pk"))


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


# --- moving runs on when their jobs end ------------------------------------------------------


def _verify_start(run: PolicyRun) -> None:
    """Queue the verification of the run's backup, once (the job row and the run's link
    to it commit together, or neither does)."""
    from backups.services import backup_verify_start

    class _Taken(Exception):
        pass

    backup = run.backup
    if backup is None:
        _end_own(run.pk, PolicyRun.Status.FAILED,
                 f"Backup #{run.backup_ref} was deleted before it could be verified.")
        return
    try:
        with transaction.atomic():
            job = backup_verify_start(backup=backup, trigger="schedule")
            if not PolicyRun.objects.filter(pk=run.pk, verify_job__isnull=True, outcome="").update(verify_job=job):
                raise _Taken  # another follower started it: drop this job row with the transaction
    except _Taken:
        return
    except CargoholdError as exc:
        _end_own(run.pk, PolicyRun.Status.FAILED, f"Could not verify the backup: {exc}")


def run_move_on(run: PolicyRun) -> None:
    """Take the next step of a run whose jobs moved: verify after its backup, mark it
    for pruning when it succeeded; a run whose backup's job is gone gets an outcome."""
    status = run.status
    if run.job_id is None and not run.outcome:
        if run.backup_ref:
            _end_own(run.pk, PolicyRun.Status.FAILED, f"Backup #{run.backup_ref} was deleted before the run ended.")
        elif timezone.now() - run.created_at > LOST_RUN_AFTER:
            _end_own(run.pk, PolicyRun.Status.FAILED, "The run never got its backup (lost).")
        return
    if status == PolicyRun.Status.RUNNING and run.verify_job_id is None and not run.job.is_active:
        _verify_start(run)
    elif status == PolicyRun.Status.SUCCEEDED:
        first = PolicyRun.objects.filter(pk=run.pk, prune_state=PolicyRun.Prune.NONE).update(
            prune_state=PolicyRun.Prune.PENDING
        )
        if first and run.policy.copy_to_id:  # once per run: only the follower that moved it on
            from repositories.worker import copy_after_run

            copy_after_run(run)


def runs_on_job_ended(sender=None, *, job, **kwargs) -> None:
    """jobs.signals.job_ended: the runs whose backup or verify job this was move on,
    then (this is a worker) prune after them and notify their outcomes."""
    runs = list(PolicyRun.objects.filter(Q(job_id=job.pk) | Q(verify_job_id=job.pk)))
    if not runs:
        return
    for run in runs:
        run_move_on(run)
    from policies import monitoring, pruning

    pruning.runs_prune_pending()
    monitoring.runs_notify_outcomes()


def runs_follow(*, policy: BackupPolicy | None = None) -> int:
    """The safety net beside the signal: move on every run that waits for a step its
    ended jobs should have triggered (a verify not started, a prune not marked). Cheap
    when nothing waits; idempotent; safe beside another follower. Returns how many runs
    it looked at."""
    waiting = PolicyRun.objects.filter(
        Q(status__in=PolicyRun.ACTIVE) | Q(status=PolicyRun.Status.SUCCEEDED, prune_state=PolicyRun.Prune.NONE)
    )
    if policy is not None:
        waiting = waiting.filter(policy=policy)
    count = 0
    for run in waiting:
        count += 1
        try:
            run_move_on(run)
        except Exception:
            logger.exception("following policy run %s failed", run.pk)
    return count
