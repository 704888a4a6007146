import getpass
import time

from django.core.management.base import BaseCommand, CommandError

from policies import services
from policies.runs import runs_follow
from policies.models import BackupPolicy, PolicyRun


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


class Command(BaseCommand):
    help = (
        "Run a backup policy now, as its Run now button does: one backup per selected volume "
        "(a worker runs them). With --wait, follow the runs to the end; the exit status is 1 if any failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the policy's name")
        parser.add_argument("--wait", action="store_true", help="wait for every run to end and print the outcomes")
        parser.add_argument("--timeout", type=float, default=0,
                            help="with --wait: give up waiting after this many seconds (default: no limit)")

    def handle(self, *args, **options):
        policy = BackupPolicy.objects.filter(name=options["name"]).first()
        if policy is None:
            names = ", ".join(BackupPolicy.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No policy named {options['name']!r} (policies: {names}).")
        from volumes.services import mirror_sync_quietly

        mirror_sync_quietly()  # a command runs beside the worker: it may refresh the mirror
        runs = services.policy_run_now(policy=policy, trigger=PolicyRun.Trigger.CLI, actor_name=cli_actor())
        if not runs:
            raise CommandError("Nothing was started.")
        for run in runs:
            self.stdout.write(f"run #{run.pk} {run.volume_name or '(policy)'}: {run.status}"
                              f"{' - ' + run.message if run.message else ''}")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"] if options["timeout"] else None
        ids = [r.pk for r in runs]
        while PolicyRun.objects.filter(pk__in=ids, status__in=PolicyRun.ACTIVE).exists():
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(f"Runs still active after {options['timeout']:g} s: is a Cargohold worker running?")
            time.sleep(1)
            runs_follow(policy=policy)  # a lost job_ended signal must not keep it waiting
        failed = 0
        for run in PolicyRun.objects.filter(pk__in=ids).order_by("volume_name"):
            failed += run.status == PolicyRun.Status.FAILED
            self.stdout.write(f"{run.volume_name or '(policy)'}: {run.status}{' - ' + run.message if run.message else ''}")
        if failed:
            raise CommandError(f"{failed} run{'s' if failed != 1 else ''} failed.")
