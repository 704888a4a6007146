"""python manage.py verify_backup ID: re-read an archive now; exit 1 if it is damaged."""

from django.core.management.base import BaseCommand, CommandError

from backups import worker
from backups.models import Backup
from project.errors import CargoholdError


class Command(BaseCommand):
    help = "Verify a stored backup: SHA-256 as recorded, and it decompresses to a complete tar."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", type=int)

    def handle(self, *args, backup_id, **options):
        backup = Backup.objects.filter(pk=backup_id).first()
        if backup is None:
            raise CommandError(f"No backup #{backup_id}.")
        try:
            result = worker.backup_verify(backup=backup)
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        if not result.ok:
            raise CommandError(f"Backup #{backup_id} ({backup.location}): {result.message}")
        self.stdout.write(f"Backup #{backup_id} ({backup.location}): {result.message}")
