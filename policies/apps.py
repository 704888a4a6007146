import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)

# Tasks after which policy runs may have moved on (their outcome is followed at once
# instead of at the next periodic check).
_FOLLOWED_TASKS = {"backups.tasks.backup_volume", "backups.tasks.verify_backup"}


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Backup policies, retention and notifications"

    def ready(self):
        from celery.signals import task_postrun

        from jobs import recovery

        _beat_expiry_for_database_scheduler()
        task_postrun.connect(_after_backup_task, weak=False, dispatch_uid="policies-follow-runs")
        recovery.register(_recover)


def _beat_expiry_for_database_scheduler():
    """django-celery-beat's DatabaseScheduler reads an entry's expiry from
    `options.expire_seconds` and ignores `options.expires` (what the file scheduler
    reads). Give every static CELERY_BEAT_SCHEDULE entry both, so their expiries hold
    with either scheduler. Done here, after all settings are read, so entries other apps
    add later in settings.py are covered too."""
    from django.conf import settings

    for entry in getattr(settings, "CELERY_BEAT_SCHEDULE", {}).values():
        options = entry.get("options") or {}
        expires = options.get("expires")
        if isinstance(expires, (int, float)) and "expire_seconds" not in options:
            options["expire_seconds"] = int(expires)
            entry["options"] = options


def _after_backup_task(sender=None, **kwargs):
    if getattr(sender, "name", None) not in _FOLLOWED_TASKS:
        return
    try:
        from policies import tasks

        tasks.follow_runs.delay()
    except Exception:  # the periodic check follows the runs anyway
        logger.exception("could not queue follow_runs")


def _recover():
    """At worker start and every minute: runs whose backup ended while no one watched
    take its outcome; due times that passed while beat was down are recorded as missed."""
    from policies import services

    services.runs_follow(prune=False, notify=False)
    services.policies_detect_missed()
