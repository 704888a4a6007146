"""Periodic tasks of the mirror. The lifecycle jobs run through jobs.tasks.run_job
(their kinds are registered by volumes.worker)."""

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
    """Reconcile the mirror with the engine; the failure is recorded before retrying.

    A fresh install has no sizes until the first slow refresh comes due (minutes):
    the first successful sync measures them at once.
    """
    services.mirror_sync()
    if services.sizes_never_measured():
        services.sizes_refresh()


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def refresh_sizes():
    services.sizes_refresh()
