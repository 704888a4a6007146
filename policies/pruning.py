"""Applying the retention rules (policies.retention decides, this deletes): after each
successful run, and from `manage.py apply_retention`. Worker side: it lists and deletes
in storage."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.services import audit_record
from policies import cron, retention
from policies.models import BackupPolicy, PolicyRun
from project.errors import CargoholdError

logger = logging.getLogger(__name__)

# A prune claimed by a worker that died is handed to the next follower after this.
PRUNE_STALE_AFTER = timedelta(minutes=15)


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
    """Every backup of the volume as retention sees it (owned: made by this policy, or the
    policy's copy of one it made), each with its repository (rows from before
    repositories count as the built-in folder's)."""
    from backups.models import Backup
    from repositories.models import Repository
    from repositories.services import KIND_COPY

    owned = owned_backup_ids(policy=policy, volume_name=volume_name)
    builtin = Repository.objects.filter(builtin=True).values_list("pk", flat=True).first()

    def copied_by_policy(b) -> bool:  # its copy job names the policy (the original may be pruned already)
        return b.job.kind == KIND_COPY and (b.job.params or {}).get("policy") == policy.pk

    return [
        retention.Record(
            id=b.pk, at=b.finished_at or b.created_at, status=b.status, origin=b.origin, keep=b.keep,
            verified=b.verified and not b.missing, owned=b.pk in owned or copied_by_policy(b),
            key=b.key or b.snapshot_id, repository=b.repository_id or builtin,
        )
        for b in Backup.objects.filter(volume_name=volume_name).select_related("job")
    ]


def repository_listing(repository_id: int | None, volume_name: str) -> set[str]:
    """The keys (archives) or snapshot ids (restic) the repository holds for the volume;
    raises whatever the backend raises when it cannot be listed."""
    from backups.storage import get_storage, storage_for
    from repositories.models import Repository

    repo = Repository.objects.filter(pk=repository_id).first() if repository_id else None
    if repo is not None and repo.is_restic:
        from repositories import restic

        if not hasattr(restic, "restic_snapshots"):
            raise CargoholdError(f"{repo.name}: restic snapshots cannot be listed by this Cargohold yet.")
        return {str(s.get("id", "")) for s in restic.restic_snapshots(repo)
                if f"volume:{volume_name}" in (s.get("tags") or [])} - {""}
    storage = storage_for(repo) if repo is not None else get_storage()
    return set(storage.list_keys(prefix=f"{volume_name}/"))


def _merge(plans: dict[str, retention.Plan]) -> retention.Plan:
    """One plan from each repository's: what each keeps and deletes, and every refusal
    named by its repository (a refusal in one does not stop deletions in another)."""
    merged = retention.Plan()
    refusals = []
    for name, plan in plans.items():
        merged.keep.update(plan.keep)
        merged.delete += plan.delete
        merged.untouchable += plan.untouchable
        if plan.refused:
            refusals.append(plan.refused if len(plans) == 1 else f"{name}: {plan.refused}")
    merged.refused = " ".join(refusals)
    return merged


def retention_apply(
    *, policy: BackupPolicy, volume_name: str, now: datetime | None = None, dry_run: bool = False,
    new_backup_succeeded: bool = True, run: PolicyRun | None = None, records: list | None = None,
) -> PruneOutcome:
    """Delete the policy's backups of one volume that its rules no longer keep.

    Refuses as a whole (deletes nothing) on any safety rule; stops at the first storage
    error. Every deletion goes through `backups.worker.backup_delete` (archive and
    manifest, audited) and is audited again as a retention decision with its policy and
    reasons.
    """
    from backups.models import Backup
    from backups.worker import backup_delete
    from repositories.models import Repository

    now = now or timezone.now()
    tz = cron.zone(policy.timezone)
    if records is None:
        records = retention_records(policy=policy, volume_name=volume_name)
    # Each repository is its own set of backups: the rules, the listing and the safety
    # rules (the newest verified backup kept) apply to each on its own.
    groups: dict[int | None, list[retention.Record]] = {}
    for record in records:
        groups.setdefault(record.repository, []).append(record)
    names = dict(Repository.objects.filter(pk__in=[g for g in groups if g]).values_list("pk", "name"))
    if dry_run:
        return PruneOutcome(volume_name, _merge({
            names.get(repo_id, "local"): retention.preview(group, policy.rules, now=now, tz=tz)
            for repo_id, group in groups.items()}))
    plans, errors = {}, []
    for repo_id, group in groups.items():
        name = names.get(repo_id, "local")
        keys: set[str] | None
        if not any(r.candidate for r in group):
            keys = set()  # nothing of the policy's here: no listing needed
        else:
            try:
                keys = repository_listing(repo_id, volume_name)
            except Exception as exc:  # whatever the backend raises: the listing failed, delete nothing there
                keys = None
                errors.append(f"The backup storage could not be listed ({name}): {exc}"
                              if len(groups) > 1 else f"The backup storage could not be listed: {exc}")
        plans[name] = retention.plan(group, policy.rules, now=now, tz=tz,
                                     new_backup_succeeded=new_backup_succeeded, storage_keys=keys)
    plan = _merge(plans)
    outcome = PruneOutcome(volume_name, plan, error=" ".join(errors))
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
    """Prune after each successful run, each run once.

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
