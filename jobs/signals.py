import logging
from datetime import timedelta

from celery.signals import worker_ready
from django.conf import settings

logger = logging.getLogger(__name__)


@worker_ready.connect
def _recover_on_worker_start(sender=None, **kwargs):
    """A worker that starts fails jobs a dead worker left running and repairs after them."""
    from jobs import recovery
    from jobs.services import jobs_fail_orphaned, jobs_fail_stale

    try:
        jobs_fail_orphaned()
        # Beats come every JOB_HEARTBEAT_SECONDS; a few missed ones mean nobody runs it.
        jobs_fail_stale(older_than=timedelta(seconds=max(10, settings.JOB_HEARTBEAT_SECONDS * 10)))
        recovery.run_all()
    except Exception:
        logger.exception("start-up recovery failed")
