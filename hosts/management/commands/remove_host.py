"""`python manage.py remove_host NAME --yes`: forget a host whose worker is stopped (its
row and mirror; its backups stay). The same rules as the Hosts page's Remove."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from project.errors import CargoholdError


class Command(BaseCommand):
    help = "Forget a Docker host (its worker stopped first): its row and mirror go, its backups stay."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--yes", action="store_true", help="confirm the removal (required)")

    def handle(self, *args, **options):
        from hosts.services import host_remove

        if not options["yes"]:
            raise CommandError(f"Removing the host {options['name']} forgets its mirror: add --yes to confirm.")
        try:
            counts = host_remove(name=options["name"], actor_name="cli")
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Removed host {options['name']} ({counts['volumes']} volumes, {counts['containers']} "
                          "containers forgotten); its backups stay.")
