"""Helpers for the lifecycle tests: run a job with the real runner in the test process."""

import dataclasses
from unittest import mock

from jobs import kinds
from jobs.models import Job
from jobs.runner import job_perform
from tests import dockercli


def run_inline(job: Job):
    """Run the job here as the worker would (minus the Celery round trip): the runner
    claims it, performs its kind, writes its end and calls its on_end (the audit).

    Returns (result, error): the result written on the job row, and the exception the
    kind's perform raised, if any (the row has its text as the job's error).
    """
    kind = kinds.get(job.kind)
    raised = []

    def perform(ctx):
        try:
            return kind.perform(ctx)
        except Exception as exc:
            raised.append(exc)
            raise

    with mock.patch.dict(kinds._kinds, {job.kind: dataclasses.replace(kind, perform=perform)}):
        job_perform(job.pk)
    job = Job.objects.get(pk=job.pk)
    assert not job.is_active and job.end_handled
    if raised:
        assert job.status in (Job.Status.FAILED, Job.Status.CANCELLED) and job.error
    return job.result, (raised[0] if raised else None)


def cleanup_labels(**extra) -> dict:
    """Labels every volume a test makes through Cargohold carries, so the cleanup finds it."""
    key, _, value = dockercli.TEST_LABEL.partition("=")
    return {key: value, **extra}
