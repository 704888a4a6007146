from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Restores and imports"

    def ready(self):
        from accounts import roles
        from jobs import kinds, recovery

        from restores import rollback, services, worker
        from restores.recovery import restores_recover

        kinds.register(services.KIND_RESTORE_NEW, "restore into a new volume", perform=worker.restore_perform,
                       on_end=worker.restore_on_end, cancel_perm=roles.RESTORE_NEW)
        kinds.register(services.KIND_RESTORE_IN_PLACE, "restore in place", perform=worker.restore_perform,
                       on_end=worker.restore_on_end, cancel_perm=roles.RESTORE_IN_PLACE)
        # Putting a volume's previous content back is not something to stop half-way.
        kinds.register(services.KIND_ROLLBACK, "putting a volume's previous content back",
                       perform=rollback.restore_rollback_perform, cancel_perm=roles.RESTORE_IN_PLACE,
                       cancellable=False)
        kinds.register(services.KIND_REMOVE_PARTIAL, "removing a partial volume",
                       perform=worker.partial_volume_remove_perform, cancel_perm=roles.RESTORE_NEW)
        recovery.register(restores_recover)
