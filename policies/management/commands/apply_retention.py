from django.core.management.base import BaseCommand, CommandError

from policies import pruning
from policies.models import BackupPolicy


class Command(BaseCommand):
    help = (
        "Apply the policies' retention rules now (what happens after each successful run). "
        "Deletes only each policy's own backups, never after a failed run, never when the storage "
        "cannot be listed. --dry-run prints what would be deleted and deletes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--policy", help="only this policy (by name)")
        parser.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")

    def handle(self, *args, **options):
        policies = BackupPolicy.objects.all()
        if options["policy"]:
            policies = policies.filter(name=options["policy"])
            if not policies.exists():
                raise CommandError(f"No policy named {options['policy']!r}.")
        dry = options["dry_run"]
        errors = 0
        for policy in policies:
            self.stdout.write(f"policy {policy.name} ({policy.rules.describe()}):")
            outcomes = pruning.policy_apply_retention(policy=policy, dry_run=dry)
            if not outcomes:
                self.stdout.write("  no backups yet")
            for o in outcomes:
                if dry:
                    ids = ", ".join(f"#{r.id} ({r.at:%Y-%m-%d %H:%M})" for r in o.plan.delete) or "nothing"
                    self.stdout.write(f"  {o.volume_name}: would delete {ids}"
                                      f"{' - ' + o.plan.refused if o.plan.refused else ''}")
                else:
                    self.stdout.write(f"  {o.volume_name}: {o.message}")
                    errors += bool(o.error)
        if errors:
            raise CommandError(f"{errors} volume{'s' if errors != 1 else ''} could not be pruned (see above).")
