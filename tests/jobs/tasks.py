"""Demo tasks for exercising the job runner; registered with the worker via project.celery."""

import time

from celery import shared_task

from jobs.runner import run_job
from project.errors import CargoholdError


def _sleep(ctx):
    steps = int(ctx.job.params.get("steps", 3))
    ctx.set_total(steps)
    for _ in range(steps):
        ctx.check_cancelled()
        time.sleep(float(ctx.job.params.get("delay", 0.1)))
        ctx.advance(1)
    return {"steps": steps}


def _fail(ctx):
    raise CargoholdError(ctx.job.params["message"])


@shared_task(acks_late=True)
def demo_sleep(job_id):
    run_job(job_id, _sleep)


@shared_task(acks_late=True)
def demo_fail(job_id):
    run_job(job_id, _fail)
