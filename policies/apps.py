from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Backup policies, retention and notifications"

    def ready(self):
        from jobs import recovery
        from jobs.signals import job_ended
        from policies.runs import runs_on_job_ended

        _beat_expiry_for_database_scheduler()
        # Runs move on when their backup's (or verify) job ends, in the worker that ended it.
        job_ended.connect(runs_on_job_ended, weak=False, dispatch_uid="policies-runs-on-job-ended")
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


def _recover():
    """At worker start and every minute: runs a lost job_ended signal left waiting move
    on; due times that passed while beat was down are recorded as missed."""
    from policies import monitoring, runs

    runs.runs_follow()
    monitoring.policies_detect_missed()
