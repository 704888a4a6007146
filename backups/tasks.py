"""Celery tasks: ids in, a service call, the job runner around it.

acks_late: a message is acknowledged only when the task returns, so a worker lost
mid-task does not silently drop it; the runner fails a re-delivered job whose worker
died (it never runs a backup twice), and the sweep plus start-up recovery fail jobs
whose heartbeat stopped and repair what they left (backups.services.backups_recover).
"""

from celery import shared_task

from backups import services
from jobs.runner import run_job


@shared_task(acks_late=True, ignore_result=True)
def backup_volume(job_id: int):
    try:
        run_job(job_id, services.backup_run)
    finally:
        # Cancelled while queued (the handler never ran): the backup row follows the job.
        services.backup_sync_with_job(job_id=job_id)


@shared_task(acks_late=True, ignore_result=True)
def verify_backup(job_id: int):
    run_job(job_id, services.backup_verify_run)


@shared_task(acks_late=True, ignore_result=True)
def delete_backup(job_id: int):
    run_job(job_id, services.backup_delete_run)
