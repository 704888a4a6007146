"""Restores from a restic snapshot, worker side: the restic branch of
restores.worker.restore_perform, with the same order and safety as archives.

New volume: the snapshot is looked up first (password, repository, snapshot there), then
the volume is created and restic restores into it (a failure removes it again). In
place: the snapshot is looked up while the containers still run; then they are stopped,
a safety backup is taken (an archive in the built-in folder, as for every restore in
place), the volume is emptied (or, for selected paths, only those paths are removed) and
restic writes; someone else starting a container on the volume meanwhile fails the
restore, which puts the safety backup back (restores.rollback).

`Restore.paths` (relative to the volume's root) become restic's --include patterns:
the selected files and folders come back with their content, owners, modes, times and
extended attributes; nothing else of the volume changes.
"""

from __future__ import annotations


from backups.models import Backup
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import CargoholdError, Refused
from restores import archive_io
from restores.models import Restore
from volumes import engine


def is_restic(backup: Backup) -> bool:
    return bool(backup.repository_id) and backup.repository.is_restic and bool(backup.snapshot_id)


def _paths(restore: Restore) -> list[str]:
    paths = []
    for path in restore.paths or []:
        if not isinstance(path, str):
            continue
        path = path.strip("/")
        if not path or any(p in ("", ".", "..") for p in path.split("/")) or "\x00" in path:
            raise Refused(f"{path!r} is not a path inside the volume; nothing was restored.")
        paths.append(path)
    return paths


def _what(restore: Restore, backup: Backup) -> str:
    paths = _paths(restore)
    if not paths:
        return f"{backup.file_count or 'the'} files of snapshot {backup.snapshot_id[:8]}"
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return f"{shown} from snapshot {backup.snapshot_id[:8]}"


def _check_snapshot(ctx: JobContext, restore: Restore, backup: Backup, *, untouched: str, of: int) -> None:
    """The repository opens, and the snapshot is in it: before anything is changed."""
    from repositories import restic

    save_fields(restore, phase="checking")
    ctx.step(f"Looking up snapshot {backup.snapshot_id[:8]} in {backup.repository.name}", number=1, of=of)
    try:
        # By the snapshot's own id (a snapshot found by a rescan may carry another backup's
        # tag, or none): its first `ls` line names it.
        found, _ = restic.restic_snapshot_ls(backup.repository, backup.snapshot_id, entries=False)
    except restic.ResticError as exc:
        if "no matching ID" in str(exc) or "not found" in str(exc):
            found = None
        else:
            raise type(exc)(f"{exc} {untouched}") from None
    ids = {found["id"]} if found and found.get("id") else set()
    if backup.snapshot_id not in ids and not any(i.startswith(backup.snapshot_id) for i in ids):
        raise CargoholdError(f"The snapshot {backup.snapshot_id[:8]} of backup #{backup.pk} is not in "
                             f"{backup.repository.name} any more (forgotten?). {untouched}")
    save_fields(restore, file_count=backup.file_count)


def _write(ctx: JobContext, restore: Restore, backup: Backup, *, of: int) -> None:
    from repositories import restic

    paths = _paths(restore)
    archive_io.check_free_space(restore.volume_name, needed=None if paths else backup.data_bytes,
                                job_id=ctx.job.pk)
    ctx.step(f"restic: writing {_what(restore, backup)} into {restore.volume_name}", number=of, of=of)
    restic.restic_restore(ctx, backup.repository, backup.snapshot_id, restore.volume_name, include=paths)
    ctx.result["data_path"] = "restic"


def restic_restore_new(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    """A snapshot (or its chosen paths) into a new volume (restores.worker.restore_new_steps)."""
    from restores.worker import restore_new_steps

    def check():
        _check_snapshot(ctx, restore, backup, untouched="No volume was created.", of=2)
        return lambda: _write(ctx, restore, backup, of=2)

    restore_new_steps(ctx, restore, backup, check=check,
                      outcome=f"Volume {restore.volume_name} was created with {_what(restore, backup)} "
                              f"(backup {restore.backup_label}).")


def _clear(restore: Restore, *, job_id: int) -> None:
    """Empty the volume, or, for selected paths, remove only those (restic puts them back)."""
    paths = _paths(restore)
    if not paths:
        archive_io.empty_volume(volume_name=restore.volume_name, job_id=job_id)
        return
    engine.run_helper(restore.volume_name, ["rm", "-rf", "--", *(f"/data/{p}" for p in paths)],
                      purpose="restore-empty", job_id=job_id)


def restic_restore_in_place(ctx: JobContext, restore: Restore, backup: Backup) -> None:
    """A snapshot (or its chosen paths) restored in place with the steps and safety rules
    of every restore in place (restores.worker.restore_in_place_steps)."""
    from restores.worker import restore_in_place_steps

    def check():
        _check_snapshot(ctx, restore, backup, untouched="The volume was not touched.", of=3)
        return lambda: _write(ctx, restore, backup, of=3)

    restore_in_place_steps(
        ctx, restore, backup, check=check, empty=lambda: _clear(restore, job_id=ctx.job.pk),
        outcome=lambda safety: (f"Volume {restore.volume_name} now holds {_what(restore, backup)} (backup "
                                f"{restore.backup_label}); its previous content is in safety backup #{safety.pk}."))
