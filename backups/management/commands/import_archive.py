"""python manage.py import_archive PATH [--volume-name NAME]"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts import roles
from accounts.cli import acting_user
from backups import imports
from backups.models import Backup
from jobs.runner import job_perform
from project.errors import CargoholdError


class Command(BaseCommand):
    help = (
        "Import a tar archive (plain, .tar.gz/.tgz or .tar.zst; the format is read from the content) as a backup "
        "of origin 'imported': every member is checked, the archive stored with a manifest. Runs here, reading "
        "PATH where it is. Prints the new backup's id, or exits non-zero naming why the archive was refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--volume-name", help="the volume name to record (default: from the file's name)")
        parser.add_argument("--user", help="the Cargohold account to act as (recorded in the audit trail)")
        parser.add_argument("--max-expanded-gib", type=int, default=None,
                            help="raise the decompression-bomb limit for this import (GiB; an Admin's power)")

    def handle(self, *args, path, volume_name, user, max_expanded_gib=None, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{path}: no such file.")
        user, requested_by = acting_user(user, roles.DOWNLOAD_ARCHIVE, "import archives", object_type="backup",
                                            global_only=True)
        name = volume_name or imports.import_volume_name(source.name)
        try:
            backup = imports.import_start(source=source, volume_name=name, original_name=source.name, user=user,
                                          trigger="cli", requested_by=requested_by, staged=False,
                                          max_expanded_bytes=max_expanded_gib * 1024**3 if max_expanded_gib else None)
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        job_perform(backup.job_id)  # here, not in a worker: the file is read where it is
        backup.refresh_from_db()
        if backup.status != Backup.Status.SUCCEEDED:
            raise CommandError(f"Refused: {backup.error}")
        self.stdout.write(str(backup.pk))
        self.stderr.write(f"Imported {backup.file_count} files from {source} as backup #{backup.pk} of "
                          f"{backup.volume_name}: {backup.location}")
