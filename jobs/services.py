"""Creating jobs, cancelling them, and the per-resource locks."""

import logging
import os
import socket
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.models import Job, ResourceLock

logger = logging.getLogger(__name__)


def job_create(
    *,
    kind: str,
    task,
    target: str = "",
    target_type: str = "volume",
    params: dict | None = None,
    user=None,
    trigger: str = "user",
    progress_total: int | None = None,
    queue: str | None = None,
) -> Job:
    """Create a queued job and enqueue `task(job_id)` once the transaction commits.

    Only the id travels through Redis: the worker loads the row, so a job is never run
    from stale arguments and the row stays the single source of truth.
    """
    job = Job.objects.create(
        kind=kind,
        target=target,
        target_type=target_type,
        params=params or {},
        created_by=user if (user is not None and user.is_authenticated) else None,
        trigger=trigger,
        progress_total=progress_total,
    )
    if task is None:
        pass  # the caller runs the job in its own process (the CLI import)
    elif queue:
        transaction.on_commit(lambda: task.apply_async((job.pk,), queue=queue))
    else:
        transaction.on_commit(lambda: task.delay(job.pk))
    return job


def job_request_cancel(*, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next check."""
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=now, error="Cancelled before it started."
    ):
        job.refresh_from_db()
        return job
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


OWNER_GONE_ERROR = "The worker running this job stopped (killed or lost) before it finished."


def jobs_fail_stale(*, older_than: timedelta) -> list[int]:
    """Fail running jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    cutoff = timezone.now() - older_than
    stale = list(
        Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    )
    for pk in stale:
        Job.objects.filter(pk=pk, status=Job.Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=Job.Status.FAILED,
            finished_at=timezone.now(),
            error=OWNER_GONE_ERROR,
        )
        logger.warning("job %s failed: its worker stopped sending heartbeats", pk)
    return stale


def locks_release_ended() -> int:
    """Release the locks of jobs that ended (a killed worker never reached its `finally`),
    without waiting for their expiry."""
    return ResourceLock.objects.filter(job__isnull=False).exclude(job__status__in=Job.ACTIVE).delete()[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _pid_dying(pid)


def _pid_dying(pid: int) -> bool:
    """A process that was SIGKILLed may linger: a zombie until its new parent reaps it,
    or blocked in the kernel (writing to the engine) with the kill still pending. It
    runs no more code either way. Linux only (/proc); elsewhere: False."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    if fields.get("State", "").strip()[:1] in ("Z", "X"):
        return True
    sigkill = 1 << (9 - 1)
    try:
        return any(int(fields.get(key, "0").strip(), 16) & sigkill for key in ("SigPnd", "ShdPnd"))
    except ValueError:
        return False


def worker_process_gone(worker: str) -> bool:
    """True when `worker` ("host:pid", as the runner records it) names a process on this
    host that no longer exists. False when it lives or cannot be checked from here
    (another host): then only its heartbeat can tell."""
    worker_host, _, pid = worker.rpartition(":")
    return worker_host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def job_owner_gone(*, job: Job, stale_after: timedelta) -> bool:
    """Is the owner of the running `job` proven gone? Its process on this host no longer
    exists, or its heartbeat is older than `stale_after`. Anything else counts as alive:
    recovery must never act on a job that may still be streaming."""
    if worker_process_gone(job.worker):
        return True
    return job.heartbeat_at is None or job.heartbeat_at < timezone.now() - stale_after


def job_fail_if_owner_gone(*, job: Job, stale_after: timedelta) -> bool:
    """Fail the running `job` if its owner is proven gone (job_owner_gone); True if failed."""
    if not job_owner_gone(job=job, stale_after=stale_after):
        return False
    # Conditional on the row we judged: a heartbeat written meanwhile proves the owner alive.
    failed = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at,
                                worker=job.worker).update(
        status=Job.Status.FAILED, finished_at=timezone.now(), error=OWNER_GONE_ERROR
    )
    if failed:
        logger.warning("job %s failed: its worker %s is gone", job.pk, job.worker)
    return bool(failed)


def jobs_fail_orphaned() -> list[int]:
    """Fail running jobs whose worker process on this host no longer exists.

    Precise where heartbeats are slow to tell: a worker restarted after a crash fails its
    predecessor's jobs at once, and a worker whose pool child was killed fails that
    child's job at once (jobs.signals), instead of after JOB_STALE_SECONDS.
    """
    orphaned = [
        pk for pk, worker in Job.objects.filter(status=Job.Status.RUNNING).values_list("pk", "worker")
        if worker_process_gone(worker)
    ]
    if orphaned:
        Job.objects.filter(pk__in=orphaned, status=Job.Status.RUNNING).update(
            status=Job.Status.FAILED,
            finished_at=timezone.now(),
            error=OWNER_GONE_ERROR,
        )
        logger.warning("jobs %s failed: their worker process is gone", orphaned)
    return orphaned


def job_outcome_adopt(*, model, job: Job, what: str) -> list:
    """Rows of `model` (backups, restores) still active although their job ended without
    finishing them (cancelled while queued, worker killed) take the job's outcome.

    Returns the rows it changed, refreshed, so the caller can audit or clean up after
    them. Idempotent: a row already ended is left alone.
    """
    changed = []
    for row in model.objects.filter(job=job, status__in=model.ACTIVE):
        status = model.Status.CANCELLED if job.status == Job.Status.CANCELLED else model.Status.FAILED
        error = job.error or f"The job ended before the {what} finished."
        if model.objects.filter(pk=row.pk, status__in=model.ACTIVE).update(
            status=status, error=error, finished_at=job.finished_at or timezone.now()
        ):
            row.refresh_from_db()
            changed.append(row)
    return changed


# --- locks -------------------------------------------------------------------------


class LockHeld(Exception):
    def __init__(self, lock: ResourceLock):
        self.lock = lock
        super().__init__(f"{lock.resource} is busy ({lock.owner})")


def lock_acquire(*, resource: str, owner: str, ttl: timedelta, job: Job | None = None) -> ResourceLock:
    """Take the lock on `resource` or raise LockHeld naming its holder.

    An expired lock is taken over: its holder is presumed dead (it stopped refreshing).
    """
    now = timezone.now()
    with transaction.atomic():
        ResourceLock.objects.filter(resource=resource, expires_at__lt=now).delete()
        try:
            with transaction.atomic():
                return ResourceLock.objects.create(
                    resource=resource, owner=owner, job=job, acquired_at=now, expires_at=now + ttl
                )
        except IntegrityError:
            pass
    held = ResourceLock.objects.filter(resource=resource).first()
    if held is None:  # released between our insert and our read: try once more
        return lock_acquire(resource=resource, owner=owner, ttl=ttl, job=job)
    raise LockHeld(held)


def lock_refresh(*, resource: str, owner: str, ttl: timedelta) -> bool:
    return bool(
        ResourceLock.objects.filter(resource=resource, owner=owner).update(expires_at=timezone.now() + ttl)
    )


def lock_release(*, resource: str, owner: str) -> None:
    ResourceLock.objects.filter(resource=resource, owner=owner).delete()


def lock_holder(*, resource: str) -> ResourceLock | None:
    return ResourceLock.objects.filter(resource=resource, expires_at__gte=timezone.now()).first()
