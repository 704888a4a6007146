"""Performs a job row in a worker: the one state machine of every run.

queued -> running (claimed by this process) -> succeeded / failed / cancelled, then the
kind's on_end once (jobs.services.job_end). A kind's `perform(ctx)` reports progress on
`ctx` (in memory); a heartbeat thread writes progress and the heartbeat to the row about
once a second and reads the cancel flag, so performers never hit the database in their
hot loops. `job_inline` runs a child job (a restore's safety backup) in the same process
through the same transitions.
"""

import logging
import os
import socket
import threading
from contextlib import contextmanager
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from hosts import refs
from jobs import kinds
from jobs.locks import LockHeld, lock_acquire, lock_refresh, lock_release
from jobs.models import Job
from jobs.services import job_end, job_fail_if_owner_gone
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


# The job's log keeps its last this many characters (a chatty hook must not fill the database).
LOG_MAX_CHARS = 64 * 1024
LOG_CUT = "[earlier lines dropped]\n"


def log_tail(text: str) -> str:
    if len(text) <= LOG_MAX_CHARS:
        return text
    cut = text[-(LOG_MAX_CHARS - len(LOG_CUT)):]
    return LOG_CUT + cut[cut.find("\n") + 1:] if "\n" in cut else LOG_CUT + cut


class JobContext:
    def __init__(self, job: Job, *, parent: "JobContext | None" = None):
        self.job = job
        self.parent = parent
        self.children: list[JobContext] = []
        self.done = job.progress_done
        self.total = job.progress_total
        self.message = ""
        self._step = ""  # "Step 2 of 3: " while a numbered step runs (step())
        self.result: dict = {}
        self.log_text = job.log or ""
        self._log_dirty = False
        self._log_mutex = threading.Lock()
        # A child job stops when its parent is asked to: one cancel flag.
        self._cancel = parent._cancel if parent is not None else threading.Event()
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
        self.message = (self._step + message)[:255]
        if self.parent is not None:  # the page follows the parent job
            self.parent.say(message)

    def step(self, label: str, *, number: int | None = None, of: int | None = None,
             total: int | None = None) -> None:
        """Begin a step with its own progress: `done` starts again from 0 towards this
        step's `total` (None: not measurable, e.g. stopping containers; the page shows an
        indeterminate bar and the bytes so far, never a bar stuck at 100%). With number
        and of, the page reads "Step 1 of 2: label": a bar that starts again from zero is
        the next step, not progress lost."""
        self.done = 0
        self.total = total
        self._step = f"Step {number} of {of}: " if number and of else ""
        self.say(label)

    def log(self, line: str) -> None:
        """Add a line to the job's log, scrubbed (what a hook or an engine prints may
        repeat a password); the heartbeat writes it, the job page shows it live."""
        text = scrubbed_text(str(line)).rstrip("\n")
        with self._log_mutex:
            self.log_text = log_tail(self.log_text + text + "\n")
            self._log_dirty = True
        if self.parent is not None:
            self.parent.log(line)

    def log_pending(self) -> str | None:
        """The log if it changed since the last call (for the heartbeat), else None."""
        with self._log_mutex:
            if not self._log_dirty:
                return None
            self._log_dirty = False
            return self.log_text

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
        job is refused with a message naming the holder. Not re-entrant: a step that needs
        the lock its caller holds is a plain function the caller calls under it.
        """
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
        try:
            for ctx in [self.ctx, *self.ctx.children]:
                log = ctx.log_pending()
                Job.objects.filter(pk=ctx.job.pk, status=Job.Status.RUNNING).update(
                    heartbeat_at=timezone.now(),
                    progress_done=ctx.done,
                    progress_total=ctx.total,
                    progress_message=ctx.message[:255],
                    **({"log": log} if log is not None else {}),
                )
                ctx._refresh_locks()
            if Job.objects.filter(pk=self.ctx.job.pk, cancel_requested=True).exists():
                self.ctx._cancel.set()
        except Exception:  # a missed beat is not worth killing the job for
            logger.exception("heartbeat of job %s failed", self.ctx.job.pk)


def _claim(job_id: int) -> Job | None:
    """Move the queued job to running, owned by this process; None if it is not ours to run.

    A message can arrive for a job that already runs: Redis hands an unacknowledged
    message out again after the visibility timeout (a long job), or someone re-sent it.
    The row, not the message, decides: a job whose owner is proven gone (its process on
    this host is gone, or its heartbeat stale beyond JOB_STALE_SECONDS) is failed, so the
    recovery steps repair after it; a job under a live owner is left alone and this
    delivery ends quietly. It never runs a job twice. A job that ended while its message
    waited (cancelled while queued) gets its on_end here.
    """
    now = timezone.now()
    here = refs.worker_host_name()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, host__in=(here, "")).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id()
    )
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job %s does not exist; nothing to run", job_id)
        return None
    if claimed:
        return job
    if job.status == Job.Status.QUEUED and job.host not in (here, ""):
        # Only the worker beside the job's engine may run it: send it on to its own queue.
        logger.warning("job %s is for the host %s; this worker serves %s: re-sent to %s",
                       job.pk, job.host, here, refs.queue_for(job.host))
        from jobs.services import job_enqueue

        job_enqueue(job=job)
        return None
    if job.status == Job.Status.RUNNING:
        stale_after = timedelta(seconds=settings.JOB_STALE_SECONDS)
        if not job_fail_if_owner_gone(job=job, stale_after=stale_after):
            logger.info("job %s already runs on %s; this delivery of its message leaves it alone",
                        job.pk, job.worker)
    else:
        job_end(job)
    return None


def _outcome(exc: BaseException | None, job: Job) -> tuple[str, str]:
    """The end state and error text of a perform that returned (None) or raised `exc`."""
    if exc is None:
        return Job.Status.SUCCEEDED, ""
    if isinstance(exc, JobCancelled):
        return Job.Status.CANCELLED, "Cancelled by request."
    if isinstance(exc, CargoholdError):
        return Job.Status.FAILED, str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return Job.Status.FAILED, f"The {kinds.get(job.kind).label} took longer than its time limit."
    logger.error("job %s (%s) crashed", job.pk, job.kind, exc_info=exc)
    return Job.Status.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}"


def _finish(ctx: JobContext, exc: BaseException | None) -> str:
    """Write the end of a running job owned by this process, then end it (on_end once).

    Conditional on the row still running under this owner: if a sweep failed it
    meanwhile (its heartbeat stalled), that ending stands and already ran on_end.
    """
    job = ctx.job
    status, error = _outcome(exc, job)
    now = timezone.now()
    written = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, worker=job.worker).update(
        status=status,
        error=scrubbed_text(error),  # an engine's or a library's words may repeat a password
        result=ctx.result,
        finished_at=now,
        heartbeat_at=now,
        progress_done=ctx.done,
        progress_total=ctx.total,
        progress_message=ctx.message[:255],
        log=ctx.log_text,
    )
    if not written:
        logger.warning("job %s was ended by someone else while it ran; its own outcome (%s) is dropped",
                       job.pk, status)
    job.refresh_from_db()
    job_end(job)
    return job.status


def job_perform(job_id: int) -> str | None:
    """Claim the queued job `job_id` and perform its kind; returns the final status
    (None when this delivery was not the job's to run)."""
    close_old_connections()
    job = _claim(job_id)
    if job is None:
        return None
    perform = kinds.get(job.kind).perform
    ctx = JobContext(job)
    beat = _Heartbeat(ctx, settings.JOB_HEARTBEAT_SECONDS)
    beat.start()
    failure = None
    try:
        if perform is None:
            raise CargoholdError(f"No worker code is registered for jobs of kind {job.kind!r}.")
        result = perform(ctx)
        if result:
            ctx.result.update(result)
    except BaseException as exc:  # noqa: B036 (even SystemExit ends the job's row first)
        failure = exc
    finally:
        beat.stop.set()
        beat.join(timeout=10)
    status = _finish(ctx, failure)
    if failure is not None and not isinstance(failure, Exception):
        raise failure  # SystemExit / KeyboardInterrupt: the process is going away
    return status


@contextmanager
def job_inline(job: Job, *, parent: JobContext):
    """Run the queued child `job` in this process, under `parent` (a restore in place
    taking its safety backup): the child row goes running -> its end through the same
    transitions and on_end as any job; its heartbeat, locks and cancel follow the
    parent's. The block's exception, after being recorded on the child, propagates.
    """
    now = timezone.now()
    if not Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id()
    ):
        raise CargoholdError(f"Job #{job.pk} is not queued; it cannot be run inside job #{parent.job.pk}.")
    job.refresh_from_db()
    ctx = JobContext(job, parent=parent)
    parent.children.append(ctx)
    try:
        yield ctx
    except BaseException as exc:
        _finish(ctx, exc)
        raise
    else:
        _finish(ctx, None)
    finally:
        parent.children.remove(ctx)
