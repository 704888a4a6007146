from datetime import timedelta

from celery import shared_task
from django.conf import settings

from jobs import recovery
from jobs.services import jobs_fail_orphaned, jobs_fail_stale


@shared_task(ignore_result=True)
def sweep_stale_jobs():
    """Fail jobs whose worker died, then let each app repair what such jobs left behind."""
    jobs_fail_orphaned()
    jobs_fail_stale(older_than=timedelta(seconds=settings.JOB_STALE_SECONDS))
    recovery.run_all()
