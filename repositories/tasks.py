"""Celery tasks of repositories: beat's periodic prune of restic repositories."""

from celery import shared_task


@shared_task(ignore_result=True)
def restic_prune_due():
    from repositories.restic_jobs import restic_prune_due as start_due

    start_due()
