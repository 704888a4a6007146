from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups and restores"

    def ready(self):
        from accounts import roles
        from backups import extract, imports, recovery, services, worker
        from jobs import kinds
        from jobs import recovery as jobs_recovery

        kinds.register(services.KIND_BACKUP, "backup", perform=worker.backup_perform, on_end=worker.backup_on_end,
                       cancel_perm=roles.RUN_BACKUP)
        kinds.register(services.KIND_VERIFY, "backup verification", perform=worker.backup_verify_perform,
                       cancel_perm=roles.RUN_BACKUP)
        kinds.register(services.KIND_DELETE, "backup deletion", perform=worker.backup_delete_perform,
                       cancel_perm=roles.MANAGE_POLICIES, cancellable=False)
        # Recorded ended by the catalogue rescan: nothing to perform, nothing to cancel.
        kinds.register(services.KIND_FOUND, "backup found in storage", cancellable=False)
        kinds.register(imports.KIND_IMPORT, "archive import", perform=imports.import_perform,
                       on_end=imports.import_on_end, cancel_perm=roles.DOWNLOAD_ARCHIVE)
        jobs_recovery.register(recovery.backups_recover)
        jobs_recovery.register(imports.uploads_clean)
        kinds.register(extract.KIND_EXTRACT, "file extraction for download", perform=extract.extract_perform,
                       on_end=extract.extract_on_end, cancel_perm=roles.DOWNLOAD_ARCHIVE,
                       time_limit=extract.TIME_LIMIT_SECONDS)
        jobs_recovery.register(extract.downloads_clean)
