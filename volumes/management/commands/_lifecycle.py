"""What the lifecycle commands share: who acts, confirmation, following the job."""

import sys
import time

from django.core.management.base import CommandError

from accounts import roles
from accounts.cli import acting_user as shared_acting_user
from jobs.models import Job


def add_common_arguments(parser) -> None:
    parser.add_argument("--user", help="the Cargohold account to act as (recorded in the audit trail); "
                                       "must hold the Admin role's manage-volumes permission")
    parser.add_argument("--no-wait", action="store_true",
                        help="print the job's id and return at once instead of waiting for the outcome")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds to wait for the outcome (default 300); the job goes on after that")


def acting_user(username: str | None, volume=None):
    """Removing a volume: an Admin of its team; creating and pruning: a global Admin's."""
    return shared_acting_user(username, roles.MANAGE_VOLUMES, "create, remove or prune volumes (Admins only)",
                              object_type="volume", obj=volume, global_only=volume is None)


def confirm(command, prompt: str, expected: str, yes: bool) -> None:
    """Nothing destructive without confirmation: --yes, or the expected answer on a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError("Refusing without confirmation: pass --yes (no terminal to ask on).")
    answer = input(prompt)
    if answer.strip() != expected:
        raise CommandError("Not confirmed; nothing was changed.")


def follow(command, job: Job, *, wait: bool, timeout: float) -> Job:
    """Print the job's progress until it ends; raise CommandError unless it succeeded."""
    command.stdout.write(f"Job #{job.pk} ({job.kind}) queued.")
    if not wait:
        return job
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        job.refresh_from_db()
        if not job.is_active:
            break
        if job.progress_message and job.progress_message != said:
            said = job.progress_message
            command.stdout.write(f"  {said}")
        if time.monotonic() > deadline:
            if job.status == Job.Status.QUEUED:
                raise CommandError(
                    f"Job #{job.pk} is still queued after {timeout:g} s: is a Cargohold worker running? "
                    f"It runs when one starts; cancel it on /jobs/{job.pk}/ if you no longer want it."
                )
            raise CommandError(f"Job #{job.pk} is still running after {timeout:g} s; follow it on /jobs/{job.pk}/.")
        time.sleep(0.3)
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(f"Job #{job.pk} {job.status}: {job.error or 'no reason given'}")
    return job
