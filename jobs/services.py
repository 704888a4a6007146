"""Creating jobs, cancelling them, ending them once, and failing those whose owner is gone.

The job row is the only state of a run. The web side creates it (`job_create`, queued)
and may cancel it; a worker moves it on (jobs.runner); whatever ends it, `job_end` calls
its kind's `on_end` exactly once and sends `jobs.signals.job_ended`.
"""

import logging
import os
import socket
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from hosts import refs
from jobs import kinds
from jobs.models import Job

logger = logging.getLogger(__name__)


def job_create(
    *,
    kind: str,
    target: str = "",
    target_type: str = "volume",
    params: dict | None = None,
    user=None,
    trigger: str = "user",
    progress_total: int | None = None,
    queue: str | None = None,
    enqueue: bool = True,
    host: str | None = None,
) -> Job:
    """Create a queued job and, once the transaction commits, send its id to the one job
    task (`jobs.tasks.run_job`) on `queue` (default: the queue of the job's host).

    The host is `host`, else the host of a volume target's reference (hosts.refs), else
    the default host: the worker beside that host's engine is the one that runs it.

    Only the id travels through Redis: the worker loads the row, so a job is never run
    from stale arguments and the row stays the single source of truth. `enqueue=False`:
    the caller runs it itself (the CLI import, a child job run with `job_inline`).
    """
    if not host:
        host = refs.host_of(target) if target_type == "volume" and target else refs.default_host_name()
    job = Job.objects.create(
        kind=kind,
        host=host,
        target=target,
        target_type=target_type,
        params=params or {},
        created_by=user if (user is not None and user.is_authenticated) else None,
        trigger=trigger,
        progress_total=progress_total,
    )
    if enqueue:
        transaction.on_commit(lambda: job_enqueue(job=job, queue=queue))
    return job


def job_enqueue(*, job: Job, queue: str | None = None) -> None:
    """Send the job's id to a worker (again: a second delivery of a live job is harmless)."""
    from jobs.tasks import run_job

    options = {"queue": queue or refs.queue_for(job.host)}
    limit = kinds.get(job.kind).time_limit
    if limit:
        options.update(time_limit=limit, soft_time_limit=max(1, limit - 60))
    run_job.apply_async((job.pk,), **options)


def job_request_cancel(*, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next check.

    A job cancelled while queued is ended here (web side); its on_end runs in the worker
    that receives its message, or at the next sweep.
    """
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=now, error="Cancelled before it started."
    ):
        job.refresh_from_db()
        return job
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def job_cancel(*, request, job: Job) -> Job:
    """The Cancel button and the API's cancel: the job's starter may, or whoever holds the
    kind's cancel permission on what the job acts on (404/403 as everywhere); refused
    with a reason for a kind that cannot be cancelled or a job that already ended.
    Audited."""
    from accounts import scoping
    from accounts.services import audit_record
    from project.errors import Refused

    kind = kinds.get(job.kind)
    if job.created_by_id != request.user.pk:
        scoping.require_on(request, kind.cancel_perm, job, object_type="job", object_name=str(job.pk))
    if not kind.cancellable:
        raise Refused(f"A {kind.label} job cannot be cancelled once started.")
    if not job.is_active:
        raise Refused(f"Job #{job.pk} already ended ({job.status}): there is nothing to cancel.")
    job = job_request_cancel(job=job)
    audit_record(action="job_cancel", request=request, object_type="job", object_name=str(job.pk),
                 params={"kind": job.kind, "target": job.target})
    return job


def job_end(job: Job) -> bool:
    """Call the ended job's on_end and send job_ended, once whoever calls (the runner, the
    sweep, a worker that receives a cancelled job's message). True if this call did it.

    The row's `end_handled` flag is claimed first, so two callers never both run it; a
    process that dies between the claim and on_end loses that on_end (at most once,
    never twice: an on_end audits and cleans up, and doing either twice is worse).
    """
    from jobs.signals import job_ended

    claimed = Job.objects.filter(pk=job.pk, end_handled=False).exclude(status__in=Job.ACTIVE).update(
        end_handled=True
    )
    if not claimed:
        return False
    job.refresh_from_db()
    on_end = kinds.get(job.kind).on_end
    if on_end is not None:
        try:
            on_end(job)
        except Exception:
            logger.exception("on_end of job %s (%s) failed", job.pk, job.kind)
    for receiver, response in job_ended.send_robust(sender=job.kind, job=job):
        if isinstance(response, Exception):
            logger.error("job_ended receiver %s failed for job %s: %r", receiver, job.pk, response)
    return True


def jobs_end_pending() -> int:
    """on_end for every job that ended without it (cancelled while queued, failed by a sweep
    in a process that died before ending it). Idempotent."""
    done = 0
    for job in Job.objects.filter(end_handled=False).exclude(status__in=Job.ACTIVE).order_by("pk"):
        done += job_end(job)
    return done


OWNER_GONE_ERROR = "The worker running this job stopped (killed or lost) before it finished."


def _fail_owner_gone(condition: dict, why: str) -> list[int]:
    """Fail the running jobs matching `condition` (re-checked in the update, so a job
    that moved on meanwhile is left alone), then end each: its on_end runs here."""
    pks = list(Job.objects.filter(status=Job.Status.RUNNING, **condition).values_list("pk", flat=True))
    failed = []
    for pk in pks:
        if Job.objects.filter(status=Job.Status.RUNNING, **condition).filter(pk=pk).update(
            status=Job.Status.FAILED, finished_at=timezone.now(), error=OWNER_GONE_ERROR
        ):
            failed.append(pk)
            logger.warning("job %s failed: %s", pk, why)
    for job in Job.objects.filter(pk__in=failed):
        job_end(job)
    return failed


def jobs_fail_stale(*, older_than: timedelta) -> list[int]:
    """Fail running jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    return _fail_owner_gone({"heartbeat_at__lt": timezone.now() - older_than},
                            "its worker stopped sending heartbeats")


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
    """Fail the running `job` if its owner is proven gone (job_owner_gone); True if failed.

    Conditional on the row we judged: a heartbeat written meanwhile proves the owner alive.
    """
    if not job_owner_gone(job=job, stale_after=stale_after):
        return False
    return bool(_fail_owner_gone({"pk": job.pk, "heartbeat_at": job.heartbeat_at, "worker": job.worker},
                                 f"its worker {job.worker} is gone"))


def jobs_fail_orphaned() -> list[int]:
    """Fail running jobs whose worker process on this host no longer exists.

    Precise where heartbeats are slow to tell: a worker restarted after a crash fails its
    predecessor's jobs at once, and a worker whose pool child was killed fails that
    child's job at once (jobs.signals), instead of after JOB_STALE_SECONDS.
    """
    gone = {worker for worker in Job.objects.filter(status=Job.Status.RUNNING).values_list("worker", flat=True)
            if worker_process_gone(worker)}
    return _fail_owner_gone({"worker__in": gone}, "its worker process is gone") if gone else []
