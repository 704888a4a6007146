from django.apps import AppConfig


class HostsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "hosts"
    verbose_name = "Docker hosts"

    def ready(self):
        from hosts import heartbeat  # noqa: F401  (the worker's heartbeat, on Celery's signals)
        from hosts.transfers import transfers_follow, transfers_on_job_ended
        from jobs import recovery
        from jobs.signals import job_ended

        # A transfer's next step starts when its previous step's job ends (hosts.transfers),
        # the recovery sweep catching what a lost signal left waiting.
        job_ended.connect(transfers_on_job_ended, weak=False, dispatch_uid="hosts-transfers-on-job-ended")
        recovery.register(transfers_follow)
