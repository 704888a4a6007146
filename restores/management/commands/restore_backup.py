"""python manage.py restore_backup ID (--to NEW_NAME | --in-place) [--path P ...] [--wait]"""

from django.core.management.base import BaseCommand, CommandError

from accounts import roles
from backups.models import Backup
from jobs.models import Job
from project.errors import CargoholdError
from restores import services
from restores.management.commands._common import acting_user, wait_for_job


def _pairs(values: list[str], what: str) -> dict:
    out = {}
    for item in values or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CommandError(f"--{what} takes KEY=VALUE, not {item!r}.")
        out[key] = value
    return out


class Command(BaseCommand):
    help = (
        "Queue a restore of a backup (run by a worker) into a new volume (--to NAME) or over its own volume "
        "(--in-place: stops its containers, takes a safety backup, restarts them). Prints the restore job's id; "
        "with --wait, exits 0 only when the restore succeeded."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup_id", type=int)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--to", metavar="NEW_NAME", help="restore into a new volume with this name; HOST:NAME "
                                                             "makes it on another registered host (its worker "
                                                             "restores it, reading the backup's repository)")
        target.add_argument("--in-place", action="store_true", help="replace the content of the backup's volume")
        parser.add_argument("--driver", help="new volume: driver (default: the manifest's, or local; choosing one "
                                             "needs the permission to create volumes)")
        parser.add_argument("--opt", action="append", metavar="KEY=VALUE",
                            help="new volume: driver options instead of the manifest's (repeat; needs the "
                                 "permission to create volumes)")
        parser.add_argument("--label", action="append", metavar="KEY=VALUE",
                            help="new volume: labels instead of the manifest's (repeat)")
        parser.add_argument("--allow-devices", action="store_true",
                            help="restore device nodes too (needs the permission to create volumes)")
        parser.add_argument("--confirm-imported", action="store_true",
                            help="in place, from an imported backup: confirm that this archive was not made from "
                                 "this volume by Cargohold and is to replace its content")
        parser.add_argument("--path", action="append", metavar="PATH", dest="paths",
                            help="restore only this file or folder (relative to the volume's root, as list_files "
                                 "shows it; repeat for several). In place, only these are replaced")
        parser.add_argument("--user", help="the Cargohold account to act as (recorded in the audit trail)")
        parser.add_argument("--wait", action="store_true", help="wait for the end; exit 0 only on success")
        parser.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds")

    def handle(self, *args, **o):
        backup = Backup.objects.filter(pk=o["backup_id"]).first()
        if backup is None:
            raise CommandError(f"No backup #{o['backup_id']}.")
        try:
            if o["in_place"]:
                user, requested_by = acting_user(o["user"], roles.RESTORE_IN_PLACE, "restore in place (Admins only)",
                                                    backup)
                restore = services.restore_in_place_start(
                    backup=backup, confirm_name=backup.volume_name, allow_devices=o["allow_devices"],
                    confirm_imported=o["confirm_imported"], user=user, trigger="cli", requested_by=requested_by,
                    paths=o["paths"],
                )
            else:
                user, requested_by = acting_user(o["user"], roles.RESTORE_NEW, "restore into a new volume", backup)
                restore = services.restore_new_start(
                    backup=backup, volume_name=o["to"], driver=o["driver"],
                    options=_pairs(o["opt"], "opt") if o["opt"] else None,
                    labels=_pairs(o["label"], "label") if o["label"] else None,
                    allow_devices=o["allow_devices"], user=user, trigger="cli", requested_by=requested_by,
                    paths=o["paths"],
                )
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(restore.job_id))
        self.stdout.flush()
        if not o["wait"]:
            return
        job = wait_for_job(restore.job, timeout=o["timeout"], say=self.stderr.write)
        restore.refresh_from_db()
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"Restore #{restore.pk} {job.status}: {job.error}")
        self.stderr.write(restore.outcome or f"Restore #{restore.pk} succeeded.")
