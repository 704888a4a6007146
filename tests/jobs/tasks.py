"""Demo job kinds for exercising the job runner; imported by the worker via CELERY_EXTRA_IMPORTS."""

import time

from jobs import kinds
from project.errors import CargoholdError

ENDED = []  # (job id, status) seen by on_end in this process


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


def _never(ctx):
    raise AssertionError("a second delivery must not run the job again")


def _on_end(job):
    from accounts.services import audit_record

    ENDED.append((job.pk, job.status))
    # Visible to the test process through the database: one row per on_end call.
    audit_record(action="demo_on_end", object_type="job", object_name=str(job.pk), params={"status": job.status})


kinds.register("demo_sleep", "demo sleep", perform=_sleep, on_end=_on_end)
kinds.register("demo_fail", "demo failure", perform=_fail, on_end=_on_end)
kinds.register("demo_never", "demo never run", perform=_never)
