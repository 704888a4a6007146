"""python manage.py list_backups [--volume NAME] [--status S] [--json]"""

import json

from django.core.management.base import BaseCommand

from backups import selectors
from backups.models import Backup


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def backup_as_dict(b: Backup) -> dict:
    return {
        "id": b.pk,
        "uid": b.uid.hex,
        "volume": b.volume_name,
        "status": b.status,
        "origin": b.origin,
        "created_at": _iso(b.created_at),
        "started_at": _iso(b.started_at),
        "finished_at": _iso(b.finished_at),
        "size_bytes": b.size_bytes,
        "bytes_read": b.bytes_read,
        "file_count": b.file_count,
        "sha256": b.sha256 or None,
        "compression": b.compression,
        "verified": b.verified,
        "verified_at": _iso(b.verified_at),
        "location": b.location or None,
        "repository": b.repository.name if b.repository_id else "local",
        "snapshot_id": b.snapshot_id or None,
        "copy_of": b.copy_of_id,
        "missing": b.missing,
        "keep": b.keep,
        "started_by": b.started_by,
        "error": b.error or None,
    }


class Command(BaseCommand):
    help = "List backups (newest first)."

    def add_arguments(self, parser):
        parser.add_argument("--volume", default="", help="only this volume's backups")
        parser.add_argument("--status", default="", choices=["", *Backup.Status.values])
        parser.add_argument("--json", action="store_true", help="a JSON array, for scripts")

    def handle(self, *args, volume, status, **options):
        filters = selectors.BackupFilters(volume=volume, status=status)
        rows = [backup_as_dict(b) for b in selectors.backup_list(filters=filters)]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            self.stdout.write(
                f"{r['id']:>6}  {r['created_at'][:19]}  {r['status']:<9}  {r['volume']:<40}  "
                f"{r['size_bytes'] if r['size_bytes'] is not None else '-':>12}  "
                f"{'verified' if r['verified'] else '-':<8}  {r['location'] or ''}"
            )
