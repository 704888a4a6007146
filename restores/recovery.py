"""Repairs after restores whose worker died (registered with jobs.recovery; worker side).

The job's own end (a half-filled new volume marked partial, the audit) is
restores.worker.restore_on_end's, called once by the runner or the sweep. What needs
the volume's lock and may have to wait is done here, idempotently and only for restores
whose job ended: the safety backup put back into a volume a killed in-place restore
emptied (skipped while someone else holds the lock), then the containers it stopped
started again.
"""

import logging

from jobs.locks import LockHeld, lock_acquire, lock_release, volume_lock
from jobs.runner import WORKER_ID
from hosts import refs
from restores.models import Restore
from restores.rollback import restart_stopped, roll_back, rollback_lock_ttl

logger = logging.getLogger(__name__)


def restores_recover() -> dict:
    """Put back and restart after ended restores; returns what it did (restore ids)."""
    report = {"rolled_back": [], "restarted": [], "skipped": []}
    ended = Restore.objects.ended()
    for restore in list(ended.filter(rollback_pending=True).select_related("safety_backup")):
        if not refs.is_here(restore.volume_name):  # another host's worker puts it back
            continue
        owner = f"recovery of restore {restore.pk} on {WORKER_ID}"
        try:
            lock_acquire(resource=volume_lock(restore.volume_name), owner=owner, ttl=rollback_lock_ttl())
        except LockHeld:
            report["skipped"].append(restore.pk)
            continue
        try:
            restore.refresh_from_db()
            if restore.rollback_pending and roll_back(None, restore, restore.safety_backup):
                report["rolled_back"].append(restore.pk)
        finally:
            lock_release(resource=volume_lock(restore.volume_name), owner=owner)
    for restore in list(ended.filter(restart_pending=True, rollback_pending=False)):
        if not refs.is_here(restore.volume_name):
            continue
        restart_stopped(restore)
        if not restore.restart_pending:
            report["restarted"].append(restore.pk)
    if report["rolled_back"] or report["restarted"]:
        from volumes.services import mirror_sync_quietly

        mirror_sync_quietly()
    if any(report.values()):
        logger.warning("restore recovery: %s", report)
    return report
