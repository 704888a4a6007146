"""Celery tasks: ids in, a service call. Beat sends `policy_due` (one PeriodicTask per
policy, kept in the database by policies.services) and `check_policies` (settings)."""

from celery import shared_task

from policies import notify, services


@shared_task(acks_late=True, ignore_result=True)
def policy_due(policy_id: int):
    # A re-delivered tick starts nothing twice: run rows are unique per due time.
    services.policy_tick(policy_id=policy_id)


@shared_task(acks_late=True, ignore_result=True)
def follow_runs():
    """After every backup or verify job (task_postrun hook) and from the periodic check."""
    services.runs_follow()


@shared_task(ignore_result=True)
def check_policies():
    services.policies_check()


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def deliver_notification(self, delivery_id: int):
    outcome = notify.delivery_attempt(delivery_id=delivery_id)
    if outcome == notify.RETRY:
        from policies.models import Delivery

        attempts = Delivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=notify.retry_delay(attempts))
