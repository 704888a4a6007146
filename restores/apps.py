from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Restores and imports"

    def ready(self):
        from accounts import roles
        from jobs import kinds, recovery

        from restores import services

        kinds.register(services.KIND_RESTORE_NEW, "restore into a new volume", cancel_perm=roles.RESTORE_NEW)
        kinds.register(services.KIND_RESTORE_IN_PLACE, "restore in place", cancel_perm=roles.RESTORE_IN_PLACE)
        kinds.register(services.KIND_IMPORT, "archive import", cancel_perm=roles.DOWNLOAD_ARCHIVE)
        # Putting a volume's previous content back is not something to stop half-way.
        kinds.register(services.KIND_ROLLBACK, "putting a volume's previous content back",
                       cancel_perm=roles.RESTORE_IN_PLACE, cancellable=False)
        kinds.register(services.KIND_REMOVE_PARTIAL, "removing a partial volume", cancel_perm=roles.RESTORE_NEW)
        recovery.register(services.restores_recover)
        recovery.register(services.uploads_clean)
