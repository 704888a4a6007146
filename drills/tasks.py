from celery import shared_task


@shared_task(ignore_result=True, expires=3600)
def start_due_drills() -> int:
    """Beat, hourly: queue the restore drills that are due (drills.services)."""
    from drills.services import drills_start_due

    return len(drills_start_due())
