"""`python manage.py transfer_volume SOURCE_REF --to-host HOST [--name NAME] [--repository R]
[--remove-source] [--wait]`: copy (or move) a volume to another host, as the volume page's
"Copy or move to another host…" does (hosts.transfers)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from accounts import roles
from accounts.cli import acting_user
from project.errors import CargoholdError


class Command(BaseCommand):
    help = ("Copy a volume to another host through a repository both hosts' workers reach: a backup on the "
            "source's host, then a restore into a new volume on the target host; with --remove-source, the "
            "source is removed after the copy succeeded (a move). Prints the transfer's id; with --wait, follows "
            "its steps and exits non-zero unless it succeeded.")

    def add_arguments(self, parser):
        parser.add_argument("source", metavar="SOURCE_REF", help="the volume: NAME on the default host, HOST:NAME elsewhere")
        parser.add_argument("--to-host", required=True, help="the target host's name")
        parser.add_argument("--name", default="", help="the new volume's name (default: the source's)")
        parser.add_argument("--repository", default="", help="the repository to go through (default: the default one)")
        parser.add_argument("--remove-source", action="store_true",
                            help="remove the source once the copy succeeded (refused while containers use it)")
        parser.add_argument("--stop-containers", action="store_true", default=None,
                            help="stop the containers that use the source during its backup (default: its label)")
        parser.add_argument("--user", help="the Cargohold account to act as (recorded in the audit trail)")
        parser.add_argument("--wait", action="store_true", help="follow the steps; exit 0 only when it succeeded")
        parser.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds")

    def handle(self, *args, **o):
        from hosts import transfers
        from hosts.models import Transfer
        from volumes.models import Volume

        volume = Volume.objects.filter(name=o["source"]).first()
        if volume is None:
            raise CommandError(f"No volume {o['source']!r} is known (NAME on the default host, HOST:NAME elsewhere).")
        perm, what = ((roles.MANAGE_VOLUMES, "move volumes (Admins only)") if o["remove_source"]
                      else (roles.RESTORE_NEW, "copy volumes"))
        user, requested_by = acting_user(o["user"], perm, what, object_type="volume", obj=volume)
        try:
            transfer = transfers.transfer_start(
                volume=volume, target_host=o["to_host"], target_name=o["name"], repository=o["repository"] or None,
                remove_source=o["remove_source"], stop_containers=o["stop_containers"], user=user, trigger="cli",
                requested_by=requested_by)
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(transfer.pk))
        self.stdout.flush()
        if not o["wait"]:
            return
        deadline = time.monotonic() + o["timeout"] if o["timeout"] else None
        said = ""
        while True:
            transfer = Transfer.objects.get(pk=transfer.pk)
            progress = transfers.transfer_progress(transfer)
            if progress.message != said:
                said = progress.message
                self.stderr.write(f"  {progress.phase}: {said}")
            if progress.ended:
                break
            if deadline and time.monotonic() > deadline:
                raise CommandError(f"Transfer #{transfer.pk} is still {progress.phase} after {o['timeout']:g} s; "
                                   f"follow it on /transfers/{transfer.pk}/.")
            time.sleep(0.5)
        if progress.phase != transfers.DONE:
            raise CommandError(f"Transfer #{transfer.pk} {progress.phase}: {progress.message}")
        self.stderr.write(f"Transfer #{transfer.pk} done: {progress.message}")
