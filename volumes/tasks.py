from celery import shared_task

from jobs.runner import run_job
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


# --- lifecycle jobs: the row's id travels, the worker loads the rest --------------------


def _create(ctx):
    return services.volume_create_perform(ctx=ctx)


def _remove(ctx):
    return services.volume_remove_perform(ctx=ctx)


def _prune(ctx):
    return services.volume_prune_perform(ctx=ctx)


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def create_volume(job_id):
    run_job(job_id, _create)


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def remove_volume(job_id):
    run_job(job_id, _remove)


@shared_task(acks_late=True, soft_time_limit=3600, time_limit=3660)
def prune_volumes(job_id):
    run_job(job_id, _prune)
