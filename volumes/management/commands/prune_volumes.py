from django.core.management.base import BaseCommand
from project.sizes import human_size

from volumes import selectors, services
from volumes.management.commands._lifecycle import acting_user, add_common_arguments, confirm, follow


def _size(n) -> str:
    return "?" if n is None else human_size(n)


class Command(BaseCommand):
    help = (
        "Remove unused volumes like the Prune page does: anonymous ones by default, all unused ones with "
        "--all; --dry-run only lists them. Protected volumes are never pruned."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="named volumes too (all unused volumes)")
        parser.add_argument("--filter-label", default="", metavar="KEY[=VALUE]",
                            help="only volumes with this label (like docker volume prune --filter label=...)")
        parser.add_argument("--host", default="", help="the Docker host whose unused volumes to prune (default: the default host)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be removed, change nothing")
        parser.add_argument("--yes", action="store_true", help="do not ask before removing")
        add_common_arguments(parser)

    def handle(self, *args, **options):
        user, requested_by = acting_user(options["user"])  # before listing anything: a global Admin's
        preview = selectors.prune_preview(include_named=options["all"], label=options["filter_label"],
                                          host=options["host"])
        for v in preview.volumes:
            self.stdout.write(f"{_size(v.size_bytes):>10}  {v.name}")
        for v in preview.protected:
            self.stdout.write(f"{'kept':>10}  {v.name} (protected)")
        total = _size(preview.total_bytes) + (f" + {preview.unmeasured} not measured" if preview.unmeasured else "")
        self.stdout.write(f"{len(preview.volumes)} volume{'s' if len(preview.volumes) != 1 else ''} would be removed; "
                          f"space reclaimed: {total} (as last measured).")
        if options["dry_run"] or not preview.volumes:
            return
        confirm(self, f"Remove these {len(preview.volumes)} volumes? Type yes: ", "yes", options["yes"])
        job = services.volume_prune_start(
            names=[v.name for v in preview.volumes], include_named=options["all"], user=user, trigger="cli",
            requested_by=requested_by,
        )
        try:
            job = follow(self, job, wait=not options["no_wait"], timeout=options["timeout"])
        finally:
            job.refresh_from_db()
            self._report(job)  # also what a failed or cancelled prune did before it stopped

    def _report(self, job) -> None:
        for r in job.result.get("removed", []):
            self.stdout.write(f"removed  {r['name']} ({_size(r['size_bytes'])})")
        for s in job.result.get("skipped", []):
            self.stdout.write(f"skipped  {s['name']}: {s['reason']}")
        if job.result.get("message"):
            self.stdout.write(job.result["message"])
