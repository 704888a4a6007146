"""Restores of some files and folders of an archive backup (`Restore.paths`), worker side.

The archive's file index says where each chosen path is; backups.partial reads just those
members (ranged reads of the frames that hold them; archives without frames from their
start) through the scanner's rules, and the data helper's GNU tar extracts them (the
engine's archive endpoint without the helper image). Nothing else of the archive is read,
so no whole-archive check pass runs first: each frame read is proven by its zstd checksum
and recorded size before the tar's end marker reaches the extractor (without an end marker
GNU tar fails, and the restore with it).

- Into a new volume: the volume holds only the chosen paths (their parent folders, when
  not chosen themselves, are created as tar creates missing folders: owned by root).
- In place: the same order and safety as a whole restore (containers stopped, a safety
  backup, rollback from it on failure), but instead of emptying the volume only the chosen
  paths are replaced: GNU tar removes each one before writing it (`--recursive-unlink
  --unlink-first`: a folder's old content goes, files that are not in the backup too);
  the rest of the volume is untouched.

Restic snapshots have their own branch (restores.restic_io).
"""

from __future__ import annotations

import re
import time

from django.db.models import Q, Sum

from backups import partial
from backups.models import Backup, BackupEntry
from backups.storage import backup_storage
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import Refused
from restores import archive_io
from restores.models import Restore
from volumes import datahelper, engine

# In place, each chosen member replaces what is there: a folder's whole old hierarchy goes.
REPLACE_OPTIONS = "--recursive-unlink --unlink-first"


def is_partial(restore: Restore, backup: Backup) -> bool:
    return bool(restore.paths) and bool(backup.key)


def what_text(restore: Restore) -> str:
    paths = restore.paths or []
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return shown


def _data_bytes(backup: Backup, entries: list[BackupEntry]) -> int:
    where = Q()
    for entry in entries:
        where |= Q(path=entry.path) | Q(path__startswith=entry.path + "/")
    return BackupEntry.objects.filter(backup=backup, kind=BackupEntry.Kind.FILE).filter(where).aggregate(
        total=Sum("size"))["total"] or 0


def _find(ctx: JobContext, restore: Restore, backup: Backup, *, untouched: str, of: int) -> list[BackupEntry]:
    save_fields(restore, phase="checking")
    ctx.step(f"Finding {len(restore.paths)} path(s) in the backup's file index", number=1, of=of)
    try:
        entries = partial.selected_entries(backup, restore.paths)
    except partial.MemberNotFound as exc:
        raise Refused(f"{exc} {untouched}") from None
    ctx.result["data_bytes"] = _data_bytes(backup, entries)
    return entries


def _write(ctx: JobContext, restore: Restore, backup: Backup, storage, *, replace: bool, of: int) -> None:
    """Stream the chosen members into the volume (helper, else the engine's endpoint)."""
    name = restore.volume_name
    archive_io.check_free_space(name, needed=ctx.result.get("data_bytes"), job_id=ctx.job.pk)
    ctx.step(f"Writing {what_text(restore)} into {name}", number=of, of=of, total=ctx.result.get("data_bytes"))
    began = time.monotonic()

    def pieces():
        for piece in partial.member_tar_pieces(backup, restore.paths, allow_devices=restore.allow_devices,
                                               storage=storage):
            ctx.done += len(piece)
            ctx.check_cancelled()
            yield piece

    image = datahelper.data_helper_image()
    if image:
        archive_io.helper_extract(name, pieces(), image=image, allow_devices=restore.allow_devices,
                                  job_id=ctx.job.pk, tar_options=REPLACE_OPTIONS if replace else "")
        ctx.result["data_path"] = "helper"
    else:
        if replace:
            _remove_paths(name, restore.paths, job_id=ctx.job.pk)
        with engine.helper_container(name, read_only=False, purpose="restore", job_id=ctx.job.pk) as cid:
            engine.put_archive(cid, pieces(), path="/")
        ctx.result["data_path"] = "engine"
    ctx.result["write_seconds"] = round(time.monotonic() - began, 3)
    ctx.result["paths"] = len(restore.paths)


_ESCAPED = re.compile(r"\\x([0-9a-f]{2})")


def _remove_paths(volume_name: str, paths: list[str], *, job_id: int) -> None:
    """The engine path in place: the chosen paths go before the engine writes them (its
    archive endpoint merges into what is there). Names that are not UTF-8 cannot travel in
    a command line: they are written over instead."""
    plain = [p for p in paths if not _ESCAPED.search(p)]
    if plain:
        engine.run_helper(volume_name, ["rm", "-rf", "--", *(f"/data/{p}" for p in plain)], purpose="restore-empty",
                          job_id=job_id)


# --- into a new volume ---------------------------------------------------------------------------


def restore_paths_new(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    """Only the chosen paths, into a new volume (restores.worker.restore_new_steps)."""
    from restores.worker import restore_new_steps

    storage = backup_storage(backup)

    def check():
        _find(ctx, restore, backup, untouched="No volume was created.", of=2)
        return lambda: _write(ctx, restore, backup, storage, replace=False, of=2)

    restore_new_steps(ctx, restore, backup, check=check,
                      outcome=f"Volume {restore.volume_name} was created with {what_text(restore)} from backup "
                              f"{restore.backup_label}.")


# --- in place ----------------------------------------------------------------------------------------


def restore_paths_in_place(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    """The chosen paths replaced in the volume, the rest untouched: the steps and the
    safety rules of every restore in place (restores.worker.restore_in_place_steps)."""
    from restores.worker import restore_in_place_steps

    storage = backup_storage(backup)

    def check():
        _find(ctx, restore, backup, untouched="The volume was not touched.", of=3)
        return lambda: _write(ctx, restore, backup, storage, replace=True, of=3)

    restore_in_place_steps(
        ctx, restore, backup, check=check, empty=None,
        outcome=lambda safety: (f"In volume {restore.volume_name}, {what_text(restore)} now hold the content of "
                                f"backup {restore.backup_label}; the rest of the volume was not changed. Its "
                                f"previous content is in safety backup #{safety.pk}."))
