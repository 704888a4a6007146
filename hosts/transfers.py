"""Copying or moving a volume to another host, through a repository both hosts reach.

A transfer is three steps, each an ordinary job of its own kind, run by the worker of the
host that holds what it touches:

1. a backup of the source (backups.services.backup_start): the source host's worker;
2. when that backup's job succeeded, a restore of it into a new volume on the target host
   (restores.services.restore_new_start with the target's reference): the target host's
   worker, with every check of a restore (the archive's SHA-256, its members' safety rules,
   the name free on the target engine);
3. for a move (`remove_source`), when the restore succeeded, the removal of the source
   (volumes.services.volume_remove_start): refused while containers use it, and then the
   transfer ends "copied; the source was not removed", the copy kept.

The source is never touched before the copy succeeded. The steps move on from
`jobs.signals.job_ended` (in the worker that ended the previous step's job), with
`transfers_follow` as the safety net (jobs.recovery: at worker start and every minute) for a
signal lost with a dying worker. The steps' jobs are the only state (`transfer_progress`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts import roles
from hosts import refs
from hosts.models import Host, Transfer
from jobs.models import Job
from project.errors import CargoholdError, Refused

logger = logging.getLogger(__name__)

# What a transfer is doing, or how it ended (read from its steps' jobs).
QUEUED = "queued"
BACKING_UP = "backing up"
RESTORING = "restoring"
REMOVING = "removing the source"
DONE = "done"
COPIED = "copied; the source was not removed"
FAILED = "failed"
ENDED = (DONE, COPIED, FAILED)

STEP_BACKUP, STEP_RESTORE, STEP_REMOVE = "backup", "restore", "removal of the source"


@dataclass(frozen=True)
class TransferProgress:
    phase: str  # one of the constants above
    step: str  # the step it is in, or the one that ended it
    message: str  # one sentence a person reads

    @property
    def ended(self) -> bool:
        return self.phase in ENDED

    @property
    def is_active(self) -> bool:
        return not self.ended

    @property
    def ok(self) -> bool:
        """The copy exists (a move whose source stayed is still a copy made)."""
        return self.phase in (DONE, COPIED)


def _job_failed_text(job: Job, what: str) -> str:
    if job.status == Job.Status.CANCELLED:
        return f"The {what} was cancelled" + (f": {job.error}" if job.error else ".")
    return f"The {what} failed: {job.error or 'no reason was recorded.'}"


def transfer_progress(transfer: Transfer) -> TransferProgress:
    """Where the transfer is, read backwards from its last step: a later step's job decides,
    so the backup's deletion (retention) later does not change how a done transfer reads."""
    t = transfer
    target = t.target_ref
    if t.removal_job_id:
        job = t.removal_job
        if job.is_active:
            return TransferProgress(REMOVING, STEP_REMOVE, f"Copied to {target}; removing the source {t.source_ref}.")
        if job.status == Job.Status.SUCCEEDED:
            return TransferProgress(DONE, STEP_REMOVE, f"Moved {t.source_ref} to {target}: the source was removed.")
        return TransferProgress(COPIED, STEP_REMOVE, f"Copied to {target}; the source was not removed: "
                                                     f"{_job_failed_text(job, 'removal')}")
    if t.restore_id:
        job = t.restore.job
        if job.is_active:
            return TransferProgress(RESTORING, STEP_RESTORE,
                                    f"Restoring into {target} on the host {t.target_host}" +
                                    (" (waiting for its worker)." if job.status == Job.Status.QUEUED else "."))
        if job.status != Job.Status.SUCCEEDED:
            return TransferProgress(FAILED, STEP_RESTORE, _job_failed_text(job, f"restore into {target}") +
                                    " The source was not touched.")
        if not t.remove_source:
            return TransferProgress(DONE, STEP_RESTORE, f"Copied {t.source_ref} to {target}; the source is kept.")
        if t.error:
            return TransferProgress(COPIED, STEP_REMOVE, f"Copied to {target}; the source was not removed: {t.error}")
        return TransferProgress(REMOVING, STEP_REMOVE, f"Copied to {target}; starting the removal of the source.")
    if t.backup_id:
        job = t.backup.job
        if job.status == Job.Status.QUEUED:
            return TransferProgress(QUEUED, STEP_BACKUP, f"Waiting for the worker of the host {t.source_host} "
                                                         "to back up the source.")
        if job.status == Job.Status.RUNNING:
            return TransferProgress(BACKING_UP, STEP_BACKUP, f"Backing up {t.source_ref}.")
        if job.status != Job.Status.SUCCEEDED:
            return TransferProgress(FAILED, STEP_BACKUP, _job_failed_text(job, "backup of the source") +
                                    " Nothing was copied.")
        if t.error:
            return TransferProgress(FAILED, STEP_RESTORE, f"{t.error} The source was not touched.")
        return TransferProgress(RESTORING, STEP_RESTORE, f"Backed up; starting the restore into {target}.")
    return TransferProgress(FAILED, STEP_BACKUP, t.error or "The backup of this transfer was deleted.")


# --- starting --------------------------------------------------------------------------------


def transfer_targets(*, volume) -> list[Host]:
    """The hosts a volume may go to: every online host but its own."""
    return [h for h in Host.objects.order_by("name") if h.name != volume.host_name and h.online]


def transfer_refusal(*, volume, target_host: str, target_name: str, remove_source: bool, user) -> str | None:
    """Why this transfer cannot start (None: it can). The same rules for the page, the CLI
    and any other caller; nothing is started when there is a reason."""
    from accounts import scoping
    from restores.models import Restore
    from volumes.forms import validate_volume_name
    from volumes.models import Volume

    if user is not None:
        if not (scoping.can(user, roles.RUN_BACKUP, volume) and scoping.can(user, roles.RESTORE_NEW, volume)):
            return "Your role does not allow copying this volume (it needs backing it up and restoring into a new volume)."
        if remove_source and not scoping.can(user, roles.MANAGE_VOLUMES, volume):
            return "Your role does not allow removing this volume: copy it instead (leave the source), or ask an Admin."
    if volume.is_gone:
        return f"The volume {volume.name} is no longer on its engine: there is nothing to copy."
    if problem := validate_volume_name(target_name or ""):
        return problem
    host = Host.objects.filter(name=target_host or "").first()
    if host is None:
        return f"No host named {target_host!r} is registered."
    if host.name == volume.host_name:
        return (f"The volume {volume.name} is already on the host {host.name}: choose another host "
                "(to copy it on the same host, back it up and restore it into a new volume).")
    if not host.online:
        since = host.offline_since
        return (f"The host {host.name} is offline" + (f" (its worker was last heard {since:%Y-%m-%d %H:%M} UTC)"
                                                     if since else " (its worker was never heard from)") +
                f": its worker would not take the restore. Start it (python manage.py host_worker --host {host.name}).")
    source_host = Host.objects.filter(name=volume.host_name).first()
    if source_host is not None and not source_host.is_default and not source_host.online:
        return (f"The host {source_host.name} of the volume is offline: its worker would not take the backup. "
                f"Start it (python manage.py host_worker --host {source_host.name}).")
    target = refs.make_ref(host.name, target_name)
    if Volume.objects.present().filter(name=target).exists():
        return f"A volume named {target_name} already exists on the host {host.name}: choose another name."
    if (Restore.objects.active().filter(volume_name=target).exists()
            or Transfer.objects.filter(target_ref=target, ended_at__isnull=True).exists()):
        return f"Another restore or transfer into {target} is already under way."
    return None


def transfer_start(*, volume, target_host: str, target_name: str = "", repository=None, remove_source: bool = False,
                   stop_containers: bool | None = None, user=None, trigger: str = "user", requested_by: str = "",
                   request=None) -> Transfer:
    """Start copying (or, with `remove_source`, moving) `volume` to `target_host` as
    `target_name` (default: its own name) through `repository` (None: the default one):
    queue the backup of the source, the first step; the others follow its job's end.
    Refused, audited and nothing started when `transfer_refusal` gives a reason."""
    from accounts.services import actor_name, audit_record
    from backups.services import backup_start
    from repositories.models import Repository
    from repositories.selectors import repository_named

    target_name = (target_name or volume.engine_name).strip()
    target = refs.make_ref(target_host, target_name) if target_host else target_name
    params = {"target": target, "remove_source": bool(remove_source), "trigger": trigger}
    problem = transfer_refusal(volume=volume, target_host=target_host, target_name=target_name,
                               remove_source=remove_source, user=user)
    try:
        if problem is None and not isinstance(repository, Repository):
            repository = repository_named(repository)
    except CargoholdError as exc:
        problem = str(exc)
    if problem is None and repository is not None:
        params["repository"] = repository.name
    if problem:
        audit_record(action="volume_transfer", actor=user, actor_name=requested_by, request=request,
                     object_type="volume", object_name=volume.name, params=params, result="error", error=problem)
        raise Refused(problem)
    with transaction.atomic():
        backup = backup_start(volume_name=volume.name, user=user, trigger=trigger, repository=repository,
                              stop_containers=stop_containers, request=request)
        transfer = Transfer.objects.create(
            source_ref=volume.name, target_ref=target, repository=repository, remove_source=bool(remove_source),
            backup=backup, created_by=user if (user is not None and user.is_authenticated) else None,
            requested_by=actor_name(user, requested_by)[:150], trigger=trigger,
        )
        audit_record(action="volume_transfer", actor=user, actor_name=requested_by, request=request,
                     object_type="volume", object_name=volume.name,
                     params={**params, "transfer": transfer.pk, "backup": backup.pk, "job": backup.job_id})
    return transfer


# --- moving on ------------------------------------------------------------------------------


def _restore_start(transfer: Transfer) -> None:
    """Step 2: the restore into the target (once: the row is locked and re-read)."""
    from restores.services import restore_new_start

    with transaction.atomic():
        t = Transfer.objects.select_for_update().filter(pk=transfer.pk).first()
        if t is None or t.restore_id or t.error or t.backup_id is None:
            return
        try:
            restore = restore_new_start(backup=t.backup, volume_name=t.target_ref, user=t.created_by,
                                        trigger=t.trigger, requested_by=t.requested_by)
        except CargoholdError as exc:
            t.error = f"The restore on the host {t.target_host} could not start: {exc}"
            t.save(update_fields=["error"])
            return
        t.restore = restore
        t.save(update_fields=["restore"])


def _removal_start(transfer: Transfer) -> None:
    """Step 3 of a move: remove the source, only now that the copy succeeded (once)."""
    from restores.services import role_refusal
    from volumes.models import Volume
    from volumes.services import volume_remove_start

    with transaction.atomic():
        t = Transfer.objects.select_for_update().filter(pk=transfer.pk).first()
        if t is None or t.removal_job_id or t.error:
            return
        source = Volume.objects.filter(name=t.source_ref).first()
        try:
            if source is None:
                raise Refused(f"The volume {t.source_ref} is not in the inventory any more.")
            if problem := role_refusal(t.created_by, roles.MANAGE_VOLUMES, "removing the source", source):
                raise Refused(problem)
            job = volume_remove_start(volume=source, user=t.created_by, trigger=t.trigger,
                                      requested_by=t.requested_by)
        except CargoholdError as exc:
            t.error = str(exc)
            t.save(update_fields=["error"])
            return
        t.removal_job = job
        t.save(update_fields=["removal_job"])


def _record_end(transfer: Transfer, progress: TransferProgress) -> None:
    """Audit how the transfer ended, once (the first follower that sees the end claims it)."""
    from accounts.services import audit_record

    if not Transfer.objects.filter(pk=transfer.pk, ended_at__isnull=True).update(ended_at=timezone.now()):
        return
    audit_record(action="volume_transfer_end", actor=transfer.created_by, actor_name=transfer.requested_by,
                 object_type="volume", object_name=transfer.source_ref,
                 params={"transfer": transfer.pk, "target": transfer.target_ref, "outcome": progress.phase,
                         "step": progress.step},
                 result="ok" if progress.phase == DONE else "error",
                 error="" if progress.phase == DONE else progress.message)


def transfer_move_on(transfer: Transfer) -> TransferProgress:
    """Take the next step the ended jobs call for; record the end once. Idempotent."""
    transfer = Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get(pk=transfer.pk)
    progress = transfer_progress(transfer)
    if progress.phase == RESTORING and transfer.restore_id is None:
        _restore_start(transfer)
    elif progress.phase == REMOVING and transfer.removal_job_id is None:
        _removal_start(transfer)
    else:
        if progress.ended:
            _record_end(transfer, progress)
        return progress
    transfer = Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get(pk=transfer.pk)
    progress = transfer_progress(transfer)
    if progress.ended:
        _record_end(transfer, progress)
    return progress


def transfers_on_job_ended(sender=None, *, job, **kwargs) -> None:
    """jobs.signals.job_ended: the transfers whose step this job was move on."""
    from backups.services import KIND_BACKUP
    from restores.services import KIND_RESTORE_NEW
    from volumes.services import KIND_REMOVE

    lookup = {KIND_BACKUP: "backup__job_id", KIND_RESTORE_NEW: "restore__job_id",
              KIND_REMOVE: "removal_job_id"}.get(job.kind)
    if lookup is None:
        return
    for transfer in Transfer.objects.filter(**{lookup: job.pk}, ended_at__isnull=True):
        transfer_move_on(transfer)


def transfers_follow() -> int:
    """The safety net beside the signal (jobs.recovery): every transfer not ended yet moves
    on if its jobs allow. Cheap when none is under way; safe beside another follower."""
    count = 0
    for transfer in Transfer.objects.filter(ended_at__isnull=True).order_by("pk"):
        count += 1
        try:
            transfer_move_on(transfer)
        except Exception:
            logger.exception("following transfer %s failed", transfer.pk)
    return count


def transfer_detail(*, transfer_id: int) -> Transfer | None:
    return (Transfer.objects.select_related("backup__job", "restore__job", "removal_job", "repository",
                                            "created_by").filter(pk=transfer_id).first())


PAGE_SIZE = 50


def transfer_page(*, page, host: str = "", volume: str = "", who=None):
    """The transfers `who` may see (a transfer belongs to its source's and its target's
    team, as a restore does), newest first; `host`: from or to that host; `volume`: from or
    to that reference."""
    from django.core.paginator import Paginator
    from django.db.models import Q

    from accounts import scoping
    from hosts.selectors import ref_host_q

    qs = Transfer.objects.select_related("backup__job", "restore__job", "removal_job", "created_by")
    if who is not None:
        names = scoping.visible_volumes(who).values("name")
        qs = qs.filter(Q(source_ref__in=names) | Q(target_ref__in=names))
    if host:
        qs = qs.filter(ref_host_q("source_ref", host) | ref_host_q("target_ref", host))
    if volume:
        qs = qs.filter(Q(source_ref=volume) | Q(target_ref=volume))
    return Paginator(qs.order_by("-created_at", "-id"), PAGE_SIZE).get_page(page)
