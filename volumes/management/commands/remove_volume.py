from django.core.management.base import BaseCommand, CommandError

from project.errors import Refused
from volumes import selectors, services
from volumes.forms import validate_volume_name
from volumes.management.commands._lifecycle import acting_user, add_common_arguments, confirm, follow


class Command(BaseCommand):
    help = (
        "Remove a volume like the page does: refused while any container (also a stopped one) uses it, "
        "never for volumes labelled cargohold.protect=true; its record and backups are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the volume's name")
        parser.add_argument("--yes", action="store_true", help="do not ask to type the name again")
        add_common_arguments(parser)

    def handle(self, *args, **options):
        name = options["name"]
        if problem := validate_volume_name(name):
            raise CommandError(problem)
        volume = selectors.volume_detail(name=name)
        if volume is None:
            raise CommandError(f"No volume named {name!r} is known to Cargohold (run sync_volumes if it is new).")
        user, requested_by = acting_user(options["user"], volume)
        confirm(self, f"Type the volume's name ({name}) to remove it: ", name, options["yes"])
        try:
            job = services.volume_remove_start(volume=volume, user=user, trigger="cli", requested_by=requested_by)
        except Refused as exc:
            raise CommandError(str(exc)) from exc
        job = follow(self, job, wait=not options["no_wait"], timeout=options["timeout"])
        if not job.is_active:
            self.stdout.write(job.result.get("message", "Removed."))
