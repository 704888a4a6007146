"""The job row is the one state machine: on_end once whatever ended the job; child jobs."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEvent
from jobs import kinds
from jobs.models import Job
from jobs.runner import JobCancelled, JobContext, job_inline, job_perform
from jobs.services import job_create, job_end, job_request_cancel, jobs_end_pending, jobs_fail_stale
from project.errors import CargoholdError
from tests.conftest import wait_for
from tests.jobs import tasks as demo  # noqa: F401  (registers the demo kinds here too)

pytestmark = [pytest.mark.django_db(transaction=True)]


def _on_end_calls(job) -> list[str]:
    return list(AuditEvent.objects.filter(action="demo_on_end", object_name=str(job.pk))
                .values_list("params__status", flat=True))


@pytest.mark.worker
def test_on_end_runs_once_after_a_worker_performed_the_job(celery_worker):
    with transaction.atomic():
        job = job_create(kind="demo_sleep", params={"steps": 2, "delay": 0.05})
    wait_for(lambda: not Job.objects.get(pk=job.pk).is_active, message="the demo job")
    wait_for(lambda: _on_end_calls(job), message="on_end")

    assert _on_end_calls(job) == ["succeeded"]
    job.refresh_from_db()
    assert job.end_handled
    assert job_end(job) is False and jobs_end_pending() == 0
    assert _on_end_calls(job) == ["succeeded"]


@pytest.mark.worker
def test_a_job_cancelled_while_queued_gets_its_on_end_from_the_worker_that_receives_it(celery_worker):
    with transaction.atomic():
        job = job_create(kind="demo_sleep", params={"steps": 2})
        job_request_cancel(job=job)  # before the message is even sent
    wait_for(lambda: _on_end_calls(job), message="on_end of the cancelled job")

    assert _on_end_calls(job) == ["cancelled"]
    assert Job.objects.get(pk=job.pk).started_at is None  # it never ran


def test_a_job_failed_by_the_sweep_gets_its_on_end_once():
    old = timezone.now() - timedelta(minutes=10)
    job = Job.objects.create(kind="demo_sleep", status=Job.Status.RUNNING, heartbeat_at=old, worker="gone:1")

    assert jobs_fail_stale(older_than=timedelta(seconds=60)) == [job.pk]
    jobs_end_pending()
    jobs_fail_stale(older_than=timedelta(seconds=60))

    assert _on_end_calls(job) == ["failed"]


def test_the_runners_end_does_not_overwrite_an_ending_made_meanwhile():
    """A job the sweep failed (its heartbeat stalled) keeps that ending and its one on_end,
    even if its perform returns afterwards."""
    def perform(ctx):
        Job.objects.filter(pk=ctx.job.pk).update(status=Job.Status.FAILED, error="swept")
        job_end(Job.objects.get(pk=ctx.job.pk))
        return {"late": True}

    kinds.register("demo_swept", "demo swept", perform=perform, on_end=demo._on_end)
    job = job_create(kind="demo_swept", enqueue=False)

    assert job_perform(job.pk) == Job.Status.FAILED
    job.refresh_from_db()
    assert job.error == "swept" and job.result == {}
    assert _on_end_calls(job) == ["failed"]


def _parent() -> JobContext:
    job = job_create(kind="demo_sleep", enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, worker="here:1")
    job.refresh_from_db()
    return JobContext(job)


def test_a_child_job_run_inline_goes_through_the_same_transitions():
    parent = _parent()
    child = job_create(kind="demo_sleep", enqueue=False)

    with job_inline(child, parent=parent) as ctx:
        assert Job.objects.get(pk=child.pk).status == Job.Status.RUNNING
        ctx.say("Streaming the volume")
        ctx.result["answer"] = 42

    child.refresh_from_db()
    assert child.status == Job.Status.SUCCEEDED and child.result == {"answer": 42}
    assert parent.message == "Streaming the volume"  # the parent's page follows the child
    assert _on_end_calls(child) == ["succeeded"]
    assert Job.objects.get(pk=parent.job.pk).status == Job.Status.RUNNING


def test_a_failing_child_records_its_failure_and_the_error_reaches_the_parent():
    parent = _parent()
    child = job_create(kind="demo_sleep", enqueue=False)

    with pytest.raises(CargoholdError, match="disk full"):
        with job_inline(child, parent=parent):
            raise CargoholdError("disk full")

    child.refresh_from_db()
    assert child.status == Job.Status.FAILED and child.error == "disk full"
    assert _on_end_calls(child) == ["failed"]


def test_cancelling_the_parent_cancels_its_child():
    parent = _parent()
    child = job_create(kind="demo_sleep", enqueue=False)

    with pytest.raises(JobCancelled):
        with job_inline(child, parent=parent) as ctx:
            parent._cancel.set()
            ctx.check_cancelled()

    assert Job.objects.get(pk=child.pk).status == Job.Status.CANCELLED


def test_a_job_of_a_kind_without_worker_code_fails_with_a_message():
    job = job_create(kind="no_such_kind", enqueue=False)

    assert job_perform(job.pk) == Job.Status.FAILED
    assert "no_such_kind" in Job.objects.get(pk=job.pk).error
