"""python manage.py rescan_backups: rebuild the backup catalogue from the manifests in storage."""

from django.core.management.base import BaseCommand

from backups import catalogue


class Command(BaseCommand):
    help = "Add catalogue rows for manifests in storage, and flag rows whose archive is gone."

    def handle(self, *args, **options):
        report = catalogue.backups_rescan()
        self.stdout.write(
            f"added {len(report['added'])}, updated {len(report['updated'])}, "
            f"missing archives {len(report['missing'])}, archives without manifest {len(report['orphans'])}, "
            f"unreadable manifests {len(report['invalid'])}, "
            f"repositories not reached {len(report.get('unreachable', []))}"
        )
        for line in report["invalid"]:
            self.stderr.write(f"unreadable manifest: {line}")
        for line in report["orphans"]:
            self.stderr.write(f"archive without manifest (not added): {line}")
        for line in report.get("unreachable", []):
            self.stderr.write(f"repository not rescanned: {line}")
        for pk in report["missing"]:
            self.stderr.write(f"backup #{pk}: its archive is missing from storage")
