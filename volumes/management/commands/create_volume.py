from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict

from volumes import services
from volumes.forms import VolumeCreateForm
from volumes.management.commands._lifecycle import acting_user, add_common_arguments, follow


class Command(BaseCommand):
    help = (
        "Create a volume like the New volume page does (same checks, job and audit record). "
        "Example: create_volume cache --opt type=tmpfs --opt device=tmpfs --opt o=size=100m --label team=shop"
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", default="", help="the volume's name (omit with --generate-name)")
        parser.add_argument("--generate-name", action="store_true", help="let the engine generate a name")
        parser.add_argument("--driver", default="local", help="volume driver (default: local)")
        parser.add_argument("--host", default="", help="the Docker host whose engine creates it (default: the default host)")
        parser.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="driver option")
        parser.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE", help="label")
        parser.add_argument("--no-mount-check", action="store_true",
                            help="do not mount the new volume once to check that its driver can")
        add_common_arguments(parser)

    def handle(self, *args, **options):
        data = QueryDict(mutable=True)
        data["name"] = options["name"]
        data["driver"] = options["driver"]
        if options["host"]:
            data["host"] = options["host"]
        if options["generate_name"]:
            data["generate_name"] = "on"
        if not options["no_mount_check"]:
            data["check_mount"] = "on"
        for prefix, items in (("opt", options["opt"]), ("label", options["label"])):
            for item in items:
                key, _, value = item.partition("=")
                data.appendlist(f"{prefix}_key", key)
                data.appendlist(f"{prefix}_value", value)
        form = VolumeCreateForm(data)
        if not form.is_valid():
            errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
            raise CommandError("Nothing was created: " + " ".join(errors))
        user, requested_by = acting_user(options["user"])
        d = form.cleaned_data
        job = services.volume_create_start(
            name=d["name"], driver=d["driver"], options=d["options"], labels=d["labels"], host=d["host"],
            check_mount=d["check_mount"], user=user, trigger="cli", requested_by=requested_by,
        )
        job = follow(self, job, wait=not options["no_wait"], timeout=options["timeout"])
        if not job.is_active:
            self.stdout.write(job.result.get("message", "Created."))
