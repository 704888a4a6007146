"""Celery tasks: ids in, the job runner around a service handler.

acks_late as for backups: a message is acknowledged only when the task returns; a job
whose worker died is failed by the runner, the sweep or start-up recovery, and
restores.services.restores_recover repairs what it left (puts a volume emptied by a
killed in-place restore back from its safety backup, marks half-filled new volumes).
"""

from celery import shared_task

from backups.services import backup_sync_with_job
from jobs.runner import run_job
from restores import services


@shared_task(acks_late=True, ignore_result=True)
def run_restore(job_id: int):
    try:
        run_job(job_id, services.restore_run)
    finally:
        # Cancelled while queued (the handler never ran): the rows follow the job.
        services.restore_sync_with_job(job_id=job_id)
        backup_sync_with_job(job_id=job_id)  # an in-place restore's safety backup


@shared_task(acks_late=True, ignore_result=True)
def import_archive(job_id: int):
    try:
        run_job(job_id, services.import_run)
    finally:
        backup_sync_with_job(job_id=job_id)


@shared_task(acks_late=True, ignore_result=True)
def rollback_restore(job_id: int):
    run_job(job_id, services.restore_rollback_run)


@shared_task(acks_late=True, ignore_result=True)
def remove_partial_volume(job_id: int):
    run_job(job_id, services.partial_volume_remove_run)
