"""What the restore commands share: who acts (and may they), following a job."""

import time

from django.core.management.base import CommandError

from accounts.cli import acting_user as _acting_user
from jobs.models import Job


def acting_user(username, perm, what, backup=None):
    return _acting_user(username, perm, what, object_type="backup", obj=backup)


def wait_for_job(job: Job, *, timeout: float, say) -> Job:
    deadline = time.monotonic() + timeout if timeout else None
    said = ""
    while True:
        job.refresh_from_db()
        if not job.is_active:
            return job
        if job.progress_message and job.progress_message != said:
            said = job.progress_message
            say(f"  {said}")
        if deadline and time.monotonic() > deadline:
            state = "still queued (is a worker running?)" if job.status == Job.Status.QUEUED else "still running"
            raise CommandError(f"Job #{job.pk} is {state} after {timeout:g} s; follow it on /jobs/{job.pk}/.")
        time.sleep(0.5)
