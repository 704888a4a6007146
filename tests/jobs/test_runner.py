"""The job runner with a real Celery worker process on Redis."""

import os
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from jobs.models import Job, ResourceLock
from jobs.locks import LockHeld, lock_acquire, lock_release, volume_lock
from jobs.services import job_create, job_request_cancel, jobs_end_pending, jobs_fail_stale
from tests.conftest import wait_for
from tests.jobs import tasks as demo  # noqa: F401  (registers the demo kinds in this process)

pytestmark = [pytest.mark.django_db(transaction=True)]


def _finished(job):
    job.refresh_from_db()
    return not job.is_active


@pytest.mark.worker
def test_worker_runs_job_to_success_and_records_progress_and_result(celery_worker):
    with transaction.atomic():
        job = job_create(kind="demo_sleep", params={"steps": 3, "delay": 0.1})

    wait_for(lambda: _finished(job), timeout=30, message="the demo job")

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"steps": 3}
    assert job.progress_done == 3 and job.progress_total == 3
    assert job.started_at and job.finished_at and job.worker


@pytest.mark.worker
def test_cancel_stops_a_running_job(celery_worker):
    with transaction.atomic():
        job = job_create(kind="demo_sleep", params={"steps": 200, "delay": 0.1})
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Job.Status.RUNNING, message="job to start")

    job_request_cancel(job=job)

    wait_for(lambda: _finished(job), timeout=20, message="cancel")
    assert job.status == Job.Status.CANCELLED
    assert job.progress_done < 200


@pytest.mark.worker
def test_error_message_of_a_failing_job_is_recorded(celery_worker):
    with transaction.atomic():
        job = job_create(kind="demo_fail", params={"message": "disk on fire"})

    wait_for(lambda: _finished(job), message="failing job")

    assert job.status == Job.Status.FAILED
    assert job.error == "disk on fire"


def test_cancel_of_a_queued_job_ends_it_at_once():
    job = Job.objects.create(kind="demo")

    job_request_cancel(job=job)

    assert job.status == Job.Status.CANCELLED and job.finished_at


def test_sweep_fails_running_jobs_without_heartbeat():
    old = timezone.now() - timedelta(minutes=10)
    stale = Job.objects.create(kind="demo", status=Job.Status.RUNNING, heartbeat_at=old)
    fresh = Job.objects.create(kind="demo", status=Job.Status.RUNNING, heartbeat_at=timezone.now())

    jobs_fail_stale(older_than=timedelta(seconds=60))

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Job.Status.FAILED and "worker" in stale.error
    assert fresh.status == Job.Status.RUNNING


def test_lock_refuses_second_owner_and_expired_lock_is_taken_over():
    lock_acquire(resource=volume_lock("a"), owner="one", ttl=timedelta(seconds=60))
    with pytest.raises(LockHeld) as exc:
        lock_acquire(resource=volume_lock("a"), owner="two", ttl=timedelta(seconds=60))
    assert exc.value.lock.owner == "one"

    ResourceLock.objects.filter(resource=volume_lock("a")).update(expires_at=timezone.now() - timedelta(seconds=1))
    lock_acquire(resource=volume_lock("a"), owner="two", ttl=timedelta(seconds=60))
    assert ResourceLock.objects.get(resource=volume_lock("a")).owner == "two"
    lock_release(resource=volume_lock("a"), owner="two")
    assert not ResourceLock.objects.exists()


@pytest.mark.worker
def test_worker_killed_mid_job_leaves_it_failed_not_running(worker_factory, settings):
    queue = f"{os.environ['CELERY_QUEUE']}-doomed"
    worker = worker_factory(concurrency=1, name="doomed", queue=queue)
    with transaction.atomic():
        job = job_create(kind="demo_sleep", params={"steps": 600, "delay": 0.1}, queue=queue)
    wait_for(lambda: Job.objects.get(pk=job.pk).progress_done > 2, message="job to make progress")

    worker.kill()
    # A new worker's start-up recovery finds the job without heartbeat and fails it.
    time.sleep(2)
    worker_factory(concurrency=1, name="rescuer", queue=queue)

    wait_for(lambda: _finished(job), timeout=30, message="recovery to fail the job")
    assert job.status == Job.Status.FAILED
    assert "stopped" in job.error
