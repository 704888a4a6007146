"""Celery tasks: ids in, a service call. Beat sends `policy_due` (one PeriodicTask per
policy, kept in the database by policies.schedules) and `check_policies` (settings).
Runs follow their backups through the job_ended signal (policies.runs), not a task."""

from celery import shared_task

from policies import monitoring, notify, runs


@shared_task(acks_late=True, ignore_result=True)
def policy_due(policy_id: int):
    # A re-delivered tick starts nothing twice: run rows are unique per due time.
    runs.policy_tick(policy_id=policy_id)


@shared_task(ignore_result=True)
def check_policies():
    monitoring.policies_check()


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def deliver_notification(self, delivery_id: int):
    outcome = notify.delivery_attempt(delivery_id=delivery_id)
    if outcome == notify.RETRY:
        from policies.models import Delivery

        attempts = Delivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=notify.retry_delay(attempts))
