from celery import shared_task

from insights import services


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def sample_usage():
    """Sample every volume's size (reusing the size refresh's measurement when fresh)."""
    services.usage_sample()


@shared_task(ignore_result=True, soft_time_limit=900, time_limit=960)
def thin_usage():
    services.usage_thin()
