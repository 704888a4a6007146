from django.apps import AppConfig


class RepositoriesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "repositories"
    verbose_name = "Repositories"

    def ready(self):
        from accounts import roles
        from jobs import kinds
        from repositories import restic_jobs, services, worker

        kinds.register(services.KIND_CHECK, "repository connection test", perform=worker.repository_check_perform,
                       on_end=worker.repository_check_on_end, cancel_perm=roles.MANAGE_POLICIES,
                       time_limit=300, progress_unit="items")
        kinds.register(services.KIND_INIT, "restic repository initialisation", perform=worker.repository_init_perform,
                       on_end=worker.repository_check_on_end, cancel_perm=roles.MANAGE_POLICIES,
                       cancellable=False, time_limit=600, progress_unit="items")
        kinds.register(services.KIND_COPY, "backup copy to a second repository", perform=worker.backup_copy_perform,
                       on_end=worker.backup_copy_on_end, cancel_perm=roles.MANAGE_POLICIES)
        kinds.register(restic_jobs.KIND_PRUNE, "restic repository prune", perform=restic_jobs.repository_prune_perform,
                       cancel_perm=roles.MANAGE_POLICIES, progress_unit="items")
