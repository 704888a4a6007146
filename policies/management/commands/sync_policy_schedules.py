from django.core.management.base import BaseCommand

from policies.schedules import policies_resync_schedules


class Command(BaseCommand):
    help = (
        "Rebuild celery beat's schedule of every backup policy from the policies "
        "(after restoring the database, or when someone edited the schedules in /admin/)."
    )

    def handle(self, *args, **options):
        count = policies_resync_schedules()
        self.stdout.write(f"Rebuilt the schedules of {count} polic{'y' if count == 1 else 'ies'}.")
