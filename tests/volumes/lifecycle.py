"""Helpers for the lifecycle tests: run a job's handler in the test process."""

from jobs.models import Job
from jobs.runner import JobContext
from tests import dockercli
from volumes import services

HANDLERS = {
    services.KIND_CREATE: services.volume_create_perform,
    services.KIND_REMOVE: services.volume_remove_perform,
    services.KIND_PRUNE: services.volume_prune_perform,
}


def run_inline(job: Job):
    """Run the job's worker side here, as the worker would (minus the Celery round trip).

    Returns (result, error): error is the exception the handler raised, if any.
    """
    job = Job.objects.select_related("created_by").get(pk=job.pk)
    ctx = JobContext(job)
    try:
        return HANDLERS[job.kind](ctx=ctx), None
    except Exception as exc:  # the runner would record it on the row
        return ctx.result, exc


def cleanup_labels(**extra) -> dict:
    """Labels every volume a test makes through Cargohold carries, so the cleanup finds it."""
    key, _, value = dockercli.TEST_LABEL.partition("=")
    return {key: value, **extra}
