import logging
from datetime import timedelta

from billiard.exceptions import WorkerLostError
from celery.signals import task_failure, worker_ready
from django.conf import settings
from django.db import close_old_connections, connections
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent once after a job ended and its kind's on_end ran (sender: the kind's name; job=).
# How another app follows a kind it does not own (policies follow their backups' jobs).
# Connect without `sender=` and test `job.kind`: Django matches senders by identity, and
# the kind read from the database is another str object than the app's constant.
job_ended = Signal()


def _fail_orphans_and_recover(stale_after: timedelta) -> None:
    from jobs import recovery
    from jobs.services import jobs_end_pending, jobs_fail_orphaned, jobs_fail_stale

    jobs_fail_orphaned()
    jobs_fail_stale(older_than=stale_after)
    jobs_end_pending()
    recovery.run_all()


@worker_ready.connect
def _recover_on_worker_start(sender=None, **kwargs):
    """A worker that starts fails jobs a dead worker left running and repairs after them.

    Only owners proven gone: a process of this host that no longer exists (the job rows
    name the pool child), or a heartbeat older than JOB_STALE_SECONDS (another host).
    """
    try:
        _fail_orphans_and_recover(timedelta(seconds=settings.JOB_STALE_SECONDS))
    except Exception:
        logger.exception("start-up recovery failed")


@task_failure.connect
def _recover_after_lost_pool_child(sender=None, exception=None, **kwargs):
    """A pool child died under its task (SIGKILL, the OOM killer): fail its job now.

    Celery's main process reports the lost child as WorkerLostError (after
    CELERY_WORKER_LOST_WAIT) and, with task_reject_on_worker_lost off, acknowledges the
    message, so nothing else would look at the job until the minute sweep. The child's
    pid is on the job row and is gone, so the orphan check fails the job at once, and
    the recovery steps start its stopped containers again and release its locks, as
    after a whole worker's death. Runs in the main process, which forks no child while
    this handler runs (the same process does start-up recovery).
    """
    if not isinstance(exception, WorkerLostError):
        return
    try:
        close_old_connections()
        _fail_orphans_and_recover(timedelta(seconds=settings.JOB_STALE_SECONDS))
    except Exception:
        logger.exception("recovery after a lost pool child failed")
    finally:
        connections.close_all()  # no database connection for the next forked child to inherit
