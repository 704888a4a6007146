import logging

from celery import shared_task

from insights import services
from volumes.engine import EngineError

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def sample_usage():
    """Sample every volume's size (reusing the size refresh's measurement when fresh).

    An unreachable engine is not a task failure worth a traceback every interval: the
    size refresh has recorded it on EngineStatus (the banner shows it); the next run
    samples again.
    """
    try:
        services.usage_sample()
    except EngineError as exc:
        logger.warning("usage sample skipped: %s", exc)


@shared_task(ignore_result=True, soft_time_limit=900, time_limit=960)
def thin_usage():
    services.usage_thin()
