"""Runs a job row inside a Celery task: state changes, progress, heartbeat, cancel.

A handler is `handler(ctx) -> dict | None`. It reports progress on `ctx` (in memory);
a heartbeat thread writes progress and the heartbeat to the row about once a second
and reads the cancel flag, so handlers never hit the database in their hot loops.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from jobs.models import Job
from jobs.services import LockHeld, job_fail_if_owner_gone, lock_acquire, lock_refresh, lock_release
from project.errors import CargoholdError, Refused
from project.redact import scrubbed_text

logger = logging.getLogger(__name__)


def worker_id() -> str:
    """`host:pid` of the process calling it. Computed per call: under Celery's prefork
    pool modules are imported in the main process before it forks, so an import-time
    value would name the parent, not the pool child that runs the job (and that the
    orphan check must find gone when the child is killed)."""
    return f"{socket.gethostname()}:{os.getpid()}"


# The importing process, as a label for lock owners outside jobs; job rows use worker_id().
WORKER_ID = worker_id()


class JobCancelled(Exception):
    pass


class JobContext:
    def __init__(self, job: Job):
        self.job = job
        self.done = job.progress_done
        self.total = job.progress_total
        self.message = ""
        self.result: dict = {}
        self._cancel = threading.Event()
        self._locks: list[tuple[str, timedelta]] = []
        self._lock_mutex = threading.Lock()
        self.lock_owner = f"job {job.pk} ({job.kind}) on {job.worker or worker_id()}"

    # progress -----------------------------------------------------------------
    def set_total(self, total: int | None) -> None:
        self.total = total

    def advance(self, amount: int) -> None:
        self.done += amount

    def advance_checked(self, amount: int) -> None:
        """Progress callback for streaming loops: count the bytes, stop if cancelled."""
        self.done += amount
        self.check_cancelled()

    def set_progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if message is not None:
            self.message = message

    def say(self, message: str) -> None:
        self.message = message[:255]

    # cancellation ---------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    # locks ----------------------------------------------------------------------
    @contextmanager
    def lock(self, resource: str, *, ttl_seconds: int | None = None, wait_seconds: float = 0):
        """Hold `resource` for the block; refreshed by the heartbeat, released after.

        With wait_seconds > 0 a held lock is waited for (checking cancel) before the
        job is refused with a message naming the holder.

        Re-entrant within one job: a nested step that takes a lock the job already holds
        (a restore in place running a normal backup as its safety net) just proceeds; the
        outer block keeps the lock and releases it.
        """
        with self._lock_mutex:
            already_held = any(held == resource for held, _ in self._locks)
        if already_held:
            yield
            return
        ttl = timedelta(seconds=ttl_seconds or settings.LOCK_TTL_SECONDS)
        owner = self.lock_owner
        deadline = timezone.now() + timedelta(seconds=wait_seconds)
        while True:
            try:
                lock_acquire(resource=resource, owner=owner, ttl=ttl, job=self.job)
                break
            except LockHeld as exc:
                if timezone.now() >= deadline:
                    raise Refused(
                        f"{resource} is busy: {exc.lock.owner} holds it "
                        f"(until {exc.lock.expires_at:%H:%M:%S} UTC at the latest)."
                    ) from None
                self.say(f"Waiting for {resource}: {exc.lock.owner}")
                self.check_cancelled()
                threading.Event().wait(1.0)
        with self._lock_mutex:
            self._locks.append((resource, ttl))
        try:
            yield
        finally:
            with self._lock_mutex:
                self._locks.remove((resource, ttl))
            lock_release(resource=resource, owner=owner)

    def _refresh_locks(self) -> None:
        with self._lock_mutex:
            held = list(self._locks)
        for resource, ttl in held:
            lock_refresh(resource=resource, owner=self.lock_owner, ttl=ttl)


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: JobContext, interval: float):
        super().__init__(name=f"job-{ctx.job.pk}-heartbeat", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.wait(self.interval):
                self.beat()
        finally:
            connection.close()

    def beat(self):
        ctx = self.ctx
        try:
            Job.objects.filter(pk=ctx.job.pk, status=Job.Status.RUNNING).update(
                heartbeat_at=timezone.now(),
                progress_done=ctx.done,
                progress_total=ctx.total,
                progress_message=ctx.message[:255],
            )
            if Job.objects.filter(pk=ctx.job.pk, cancel_requested=True).exists():
                ctx._cancel.set()
            ctx._refresh_locks()
        except Exception:  # a missed beat is not worth killing the job for
            logger.exception("heartbeat of job %s failed", ctx.job.pk)


def _claim(job_id: int) -> Job | None:
    """Move the queued job to running, owned by this process; None if it is not ours to run.

    A message can arrive for a job that already runs: Redis hands an unacknowledged
    message out again after the visibility timeout (a long job), or someone re-sent it.
    The row, not the message, decides: a job whose owner is proven gone (its process on
    this host is gone, or its heartbeat stale beyond JOB_STALE_SECONDS) is failed, so the
    recovery steps repair after it; a job under a live owner is left alone and this
    delivery ends quietly. It never runs a job twice.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id()
    )
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job %s does not exist; nothing to run", job_id)
        return None
    if claimed:
        return job
    if job.status == Job.Status.RUNNING:
        stale_after = timedelta(seconds=settings.JOB_STALE_SECONDS)
        if not job_fail_if_owner_gone(job=job, stale_after=stale_after):
            logger.info("job %s already runs on %s; this delivery of its message leaves it alone",
                        job.pk, job.worker)
    return None


def run_job(job_id: int, handler: Callable[[JobContext], dict | None]) -> str | None:
    """Run `handler` for the queued job `job_id`; returns the final status."""
    close_old_connections()
    job = _claim(job_id)
    if job is None:
        return None
    ctx = JobContext(job)
    beat = _Heartbeat(ctx, settings.JOB_HEARTBEAT_SECONDS)
    beat.start()
    status, error = Job.Status.SUCCEEDED, ""
    try:
        result = handler(ctx)
        if result:
            ctx.result.update(result)
    except JobCancelled:
        status, error = Job.Status.CANCELLED, "Cancelled by request."
    except CargoholdError as exc:
        status, error = Job.Status.FAILED, str(exc)
    except Exception as exc:
        logger.exception("job %s (%s) crashed", job.pk, job.kind)
        status, error = Job.Status.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}"
    finally:
        beat.stop.set()
        beat.join(timeout=10)
    Job.objects.filter(pk=job.pk).update(
        status=status,
        error=scrubbed_text(error),  # an engine's or a library's words may repeat a password
        result=ctx.result,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
        progress_done=ctx.done,
        progress_total=ctx.total,
        progress_message=ctx.message[:255],
    )
    job.refresh_from_db()
    after = getattr(handler, "after_job", None)
    if after is not None:
        after(job)
    return status
