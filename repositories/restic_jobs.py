"""restic repositories' own jobs: prune (the button, and a periodic schedule).

`restic_prune_start` queues a `repository_prune` job (web side, or beat through
`restic_prune_due`); the worker runs `restic prune` (repositories.restic) under
Cargohold's lock on the repository, its phases and counts as the job's progress. Every
restic repository is pruned every RESTIC_PRUNE_EVERY_DAYS days (0: never on a schedule):
beat asks hourly which are due, judged by their last prune job.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from jobs.models import Job
from jobs.runner import JobContext
from jobs.services import job_create
from project.errors import Refused
from repositories.models import Repository

KIND_PRUNE = "repository_prune"


def restic_prune_start(*, repository: Repository, user=None, trigger: str = "user", request=None) -> Job:
    """Queue a prune of a restic repository (refused while one is queued or running)."""
    if not repository.is_restic:
        raise Refused(f"{repository.name} is not a restic repository: there is nothing to prune.")
    if Job.objects.filter(kind=KIND_PRUNE, target=repository.name, status__in=Job.ACTIVE).exists():
        raise Refused(f"A prune of {repository.name} is already queued or running.")
    with transaction.atomic():
        job = job_create(kind=KIND_PRUNE, target=repository.name, target_type="repository",
                         params={"repository": repository.pk}, user=user, trigger=trigger)
        audit_record(action="repository_prune", actor=user, request=request, object_type="repository",
                     object_name=repository.name, params={"job": job.pk, "trigger": trigger})
    return job


def restic_prune_due(*, now=None) -> list[Job]:
    """Start the prunes that are due (beat, hourly): restic repositories whose last
    prune job was created more than RESTIC_PRUNE_EVERY_DAYS ago, or never."""
    days = settings.RESTIC_PRUNE_EVERY_DAYS
    if not days:
        return []
    now = now or timezone.now()
    started = []
    for repo in Repository.objects.filter(format=Repository.Format.RESTIC):
        last = Job.objects.filter(kind=KIND_PRUNE, target=repo.name).order_by("-created_at").first()
        if last is not None and (last.status in Job.ACTIVE or last.created_at > now - timedelta(days=days)):
            continue
        if not repo.backups.exists():
            continue  # nothing was ever written through Cargohold: nothing to prune
        started.append(restic_prune_start(repository=repo, trigger="schedule"))
    return started


def repository_prune_perform(ctx: JobContext) -> dict:
    from repositories import restic
    from repositories.services import repository_for_job

    repo = repository_for_job(ctx.job)
    ctx.say(f"restic prune of {repo.name}")
    text = restic.restic_prune(ctx, repo)
    return {"message": f"Pruned {repo.name}: {text}"}
