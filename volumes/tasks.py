from celery import shared_task

from volumes import engine, services


@shared_task(
    ignore_result=True,
    autoretry_for=(engine.EngineUnavailable,),
    retry_backoff=5,
    retry_backoff_max=60,
    max_retries=3,
)
def sync_mirror():
    """Reconcile the mirror with the engine; the failure is recorded before retrying."""
    services.mirror_sync()


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def refresh_sizes():
    services.sizes_refresh()
