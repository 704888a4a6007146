"""The one task of every job, and the sweep. Only ids travel through Redis."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from jobs import recovery
from jobs.runner import job_perform
from jobs.services import jobs_end_pending, jobs_fail_orphaned, jobs_fail_stale


@shared_task(acks_late=True, ignore_result=True)
def run_job(job_id: int):
    """Perform job `job_id`, whatever its kind (jobs.kinds). acks_late: a message is
    acknowledged when the job ended, so a worker lost mid-job does not drop it silently;
    a second delivery of a live job's message is a no-op (jobs.runner._claim). Time limits
    are the kind's, given when the message is sent (jobs.services.job_enqueue)."""
    job_perform(job_id)


@shared_task(ignore_result=True)
def sweep_stale_jobs():
    """Fail jobs whose worker died, end jobs that ended without their on_end, then let each
    app repair what such jobs left behind."""
    jobs_fail_orphaned()
    jobs_fail_stale(older_than=timedelta(seconds=settings.JOB_STALE_SECONDS))
    jobs_end_pending()
    recovery.run_all()
