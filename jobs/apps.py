from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs and locks"

    def ready(self):
        from jobs import signals  # noqa: F401  (worker start-up recovery)
