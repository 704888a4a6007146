from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups and restores"

    def ready(self):
        from accounts import roles
        from jobs import kinds, recovery

        from backups import services

        kinds.register(services.KIND_BACKUP, "backup", cancel_perm=roles.RUN_BACKUP)
        kinds.register(services.KIND_VERIFY, "backup verification", cancel_perm=roles.RUN_BACKUP)
        kinds.register(services.KIND_DELETE, "backup deletion", cancel_perm=roles.MANAGE_POLICIES, cancellable=False)
        recovery.register(services.backups_recover)
