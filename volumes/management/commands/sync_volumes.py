import os

from django.core.management.base import BaseCommand, CommandError

from volumes import engine, services


class Command(BaseCommand):
    help = "Reconcile the mirror with the Docker Engine now (add, update, mark gone)."

    def add_arguments(self, parser):
        parser.add_argument("--sizes", action="store_true", help="also measure volume sizes (slow on big hosts)")
        parser.add_argument("--host", default="", help="the Docker host to sync (default: the one this machine's "
                                                       "worker serves, CARGOHOLD_WORKER_HOST, else the default host)")

    def handle(self, *args, **options):
        if options["host"]:
            os.environ["CARGOHOLD_WORKER_HOST"] = options["host"]  # this process serves that host now
        try:
            result = services.mirror_sync()
            self.stdout.write(f"Synced: {result}")
            if options["sizes"]:
                n = services.sizes_refresh()
                self.stdout.write(f"Measured {n} volume sizes.")
        except engine.EngineError as exc:
            raise CommandError(str(exc)) from exc
