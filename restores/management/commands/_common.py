"""What the restore commands share: who acts (and may they), following a job."""

import getpass
import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts.services import audit_record
from jobs.models import Job


def acting_user(username: str | None, perm: str, what: str):
    """(user or None, requested_by): the account named by --user (must hold `perm`), else
    cli:<login name> — whoever runs manage.py on the host already has the database."""
    if not username:
        try:
            login = getpass.getuser()
        except Exception:
            login = "unknown"
        return None, f"cli:{login}"
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"No active Cargohold user named {username!r}.")
    if not user.has_perm(perm):
        audit_record(action="permission_denied", actor=user, object_type="backup", object_name="(cli)",
                     params={"permission": perm, "via": "cli"}, result="denied")
        raise CommandError(f"User {username} may not {what}.")
    return user, username


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
