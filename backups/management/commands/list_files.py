"""python manage.py list_files BACKUP_ID [PATH] [--recursive] [--json]"""

import json
import stat

from django.core.management.base import BaseCommand, CommandError

from backups import file_index
from backups.file_index import entry_time
from backups.models import Backup, BackupEntry

TYPE_BITS = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK, "h": stat.S_IFREG, "o": 0}
TYPE_NAMES = {"f": "file", "d": "folder", "l": "symlink", "h": "hardlink", "o": "other"}


def _mtime(value: float) -> str | None:
    when = entry_time(value)
    return when.isoformat().replace("+00:00", "Z") if when else None


def entry_as_dict(e: BackupEntry) -> dict:
    return {"path": e.path, "name": e.name, "type": TYPE_NAMES[e.kind], "size": e.size, "mode": f"{e.mode:04o}",
            "uid": e.uid, "gid": e.gid, "mtime": _mtime(e.mtime), "link": e.link or None}


def entry_line(e: BackupEntry, *, show_path: bool) -> str:
    mode = stat.filemode(TYPE_BITS[e.kind] | e.mode)
    if e.kind == "h":
        mode = "h" + mode[1:]
    elif e.kind == "o":
        mode = "?" + mode[1:]
    name = e.path if show_path else e.name
    link = f" -> {e.link}" if e.kind == "l" else (f" link to {e.link}" if e.kind == "h" else "")
    suffix = "/" if e.kind == "d" else ""
    return f"{mode}  {e.uid:>6}/{e.gid:<6} {e.size:>14}  {_mtime(e.mtime)[:19]}  {name}{suffix}{link}"


class Command(BaseCommand):
    help = (
        "List the files of a backup from its file index: a folder's entries (the volume's root by default), "
        "or one file's; with --recursive everything under PATH. Name, type, size, mode, owner, mtime."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup_id", type=int)
        parser.add_argument("path", nargs="?", default="", help="a folder or file, relative to the volume's root")
        parser.add_argument("--recursive", "-r", action="store_true", help="everything under PATH, in path order")
        parser.add_argument("--json", action="store_true", help="a JSON array, for scripts")

    def handle(self, *args, backup_id, path, recursive, **options):
        backup = Backup.objects.filter(pk=backup_id).first()
        if backup is None:
            raise CommandError(f"No backup #{backup_id}.")
        if not file_index.index_has_entries(backup):
            raise CommandError(f"Backup #{backup.pk} has no file index (made before Cargohold kept one, or found "
                               "without one).")
        path = file_index.normalize_path(path)
        entry = file_index.index_entry(backup, path) if path else None
        if path and entry is None:
            raise CommandError(f"Backup #{backup.pk} holds no {path}.")
        if entry is not None and entry.kind != BackupEntry.Kind.DIR:
            rows = [entry]
        elif recursive:
            qs = BackupEntry.objects.filter(backup=backup)
            if path:
                qs = qs.filter(path__startswith=path + "/")
            rows = qs.order_by("path").iterator(chunk_size=2000)
        else:
            rows = (BackupEntry.objects.filter(backup=backup, parent=path).order_by("name")
                    .iterator(chunk_size=2000))
        if options["json"]:
            self.stdout.write(json.dumps([entry_as_dict(e) for e in rows], indent=2, ensure_ascii=False))
            return
        for e in rows:
            self.stdout.write(entry_line(e, show_path=recursive or entry is not None and entry.kind != "d"))
