"""python manage.py prune_repository NAME [--wait]: remove the data of forgotten snapshots
from a restic repository now (the same job the hourly schedule starts every
RESTIC_PRUNE_EVERY_DAYS); prints the job's id."""

import time

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job
from project.errors import CargoholdError
from repositories.restic_jobs import restic_prune_start
from repositories.selectors import repository_named


class Command(BaseCommand):
    help = "Prune a restic repository (a job run by a worker)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the repository's name")
        parser.add_argument("--wait", action="store_true", help="wait for the prune; exit 0 only if it succeeded")

    def handle(self, *args, name, wait, **options):
        try:
            job = restic_prune_start(repository=repository_named(name), trigger="cli")
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(job.pk))
        if not wait:
            return
        while True:
            job.refresh_from_db()
            if job.status not in Job.ACTIVE:
                break
            time.sleep(0.5)
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"Prune job #{job.pk} {job.status}: {job.error}")
        self.stderr.write(f"Prune job #{job.pk} succeeded.")
