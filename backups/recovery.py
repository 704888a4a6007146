"""Repairs after crashed backups, registered with jobs.recovery (worker start, every minute).

A backup whose worker died has its job failed by the sweep, which calls `backup_on_end`
(archive and helpers removed, end audited). What remains is done here: containers such a
backup stopped are started again, and temporary archive files of runs that ended are
removed. Idempotent; safe beside running jobs.
"""

from __future__ import annotations

import logging
import uuid

from accounts.services import audit_record
from backups.consistency import start_again
from hosts import refs
from backups.models import Backup
from backups.storage import archive_storages

logger = logging.getLogger(__name__)


def backups_recover() -> dict:
    """Start again the containers crashed backups left stopped; remove dead temp files."""
    report = {"restarted": [], "temp_removed": []}
    for backup in Backup.objects.filter(restart_pending=True).ended():
        if not refs.is_here(backup.volume_name):  # its containers are on another host's engine
            continue
        errors = start_again(backup.stopped_containers)
        Backup.objects.filter(pk=backup.pk).update(restart_pending=bool(errors), restart_error="; ".join(errors))
        if not errors:
            report["restarted"].append(backup.pk)
            audit_record(action="backup_restart_containers", object_type="volume", object_name=backup.volume_name,
                         params={"backup": backup.pk,
                                 "containers": [c.get("name") for c in backup.stopped_containers]})

    def is_dead(token: str, age_seconds: float) -> bool:
        # Ours (a backup's uid): dead once the backup is no longer active. Unknown tokens
        # (another feature's writers) only when a day old.
        try:
            status = Backup.objects.filter(uid=uuid.UUID(hex=token)).values_list("status", flat=True).first()
        except ValueError:
            status = None
        if status is not None:
            return status not in Backup.ACTIVE
        return age_seconds > 24 * 3600

    for repository, storage in archive_storages():
        try:
            report["temp_removed"] += storage.remove_temp_files(is_dead=is_dead)
        except Exception as exc:  # an unreachable repository must not stop the sweep of the others
            logger.warning("backup recovery: could not sweep the temporary files of repository %s: %s",
                           repository.name if repository else "local", exc)
    if any(report.values()):
        logger.warning("backup recovery: %s", report)
    return report
