"""python manage.py backup_volume NAME [--repository NAME] [--stop-containers] [--compression zstd|gzip] [--wait]"""

import time

from django.core.management.base import BaseCommand, CommandError

from backups import services
from backups.models import Backup
from project.errors import CargoholdError


class Command(BaseCommand):
    help = "Queue a backup of a volume (run by the worker); prints the backup's id."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the volume's name")
        stop = parser.add_mutually_exclusive_group()
        stop.add_argument("--stop-containers", action="store_true", default=None,
                          help="stop the running containers that use the volume during the backup")
        stop.add_argument("--no-stop-containers", dest="stop_containers", action="store_false",
                          help="do not stop them, even if the volume's label says so")
        parser.add_argument("--compression", choices=["zstd", "gzip"], default="zstd")
        parser.add_argument("--repository", default="",
                            help="the repository to write to (its name); default: the default repository")
        parser.add_argument("--wait", action="store_true",
                            help="wait for the backup to end; exit 0 only if it succeeded")
        parser.add_argument("--timeout", type=float, default=0,
                            help="with --wait: give up waiting after this many seconds (0: no limit)")

    def handle(self, *args, name, stop_containers, compression, wait, timeout, repository, **options):
        from volumes.models import Volume

        if not Volume.objects.filter(name=name, gone_since__isnull=True).exists():
            # Created a moment ago? Management commands may ask the engine.
            from volumes.services import mirror_sync_quietly

            mirror_sync_quietly()
        try:
            backup = services.backup_start(volume_name=name, trigger="cli", stop_containers=stop_containers,
                                           compression=compression, repository=repository or None)
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(backup.pk))
        self.stdout.flush()
        if not wait:
            return
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            backup.refresh_from_db()
            if not backup.is_active:
                break
            if deadline and time.monotonic() > deadline:
                raise CommandError(f"Backup #{backup.pk} is still {backup.status} after {timeout:g} s (is a worker running?).")
            time.sleep(0.5)
        if backup.status != Backup.Status.SUCCEEDED:
            raise CommandError(f"Backup #{backup.pk} {backup.status}: {backup.error}")
        self.stderr.write(f"Backup #{backup.pk} succeeded: {backup.location} ({backup.size_bytes} bytes, sha256 {backup.sha256})")
