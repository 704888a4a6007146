from django.apps import AppConfig


class DrillsConfig(AppConfig):
    """Restore drills, and what else makes a backup restorable (issue 15): the database
    dumps' job and clean-up (backups.dumps) and the restore.post hooks (backups.hooks),
    wired here so that the backups and restores apps need no change for them."""

    name = "drills"
    verbose_name = "Restore drills"

    def ready(self):
        from django.db.models.signals import post_delete

        from accounts import roles
        from backups import dumps
        from backups.hooks import restore_post_hooks
        from backups.models import Backup
        from drills import services, worker
        from jobs import kinds, recovery
        from jobs.signals import job_ended

        kinds.register(services.KIND_DRILL, "restore drill", perform=worker.drill_perform,
                       on_end=worker.drill_on_end, cancel_perm=roles.RESTORE_NEW)
        recovery.register(worker.drills_recover)
        kinds.register(dumps.KIND_DUMP_LOAD, "loading a database dump", perform=dumps.dump_load_perform,
                       cancel_perm=roles.RESTORE_IN_PLACE, cancellable=False)
        # A failed backup keeps no dump (a dead worker's included); a deleted one takes its dumps along.
        # (No `sender=`: signals match senders by identity, and a kind read from the database
        # is another string object; the receivers check job.kind.)
        job_ended.connect(dumps.dumps_on_backup_ended, weak=False, dispatch_uid="drills-dumps-on-backup-ended")
        post_delete.connect(dumps.dumps_on_backup_deleted, sender=Backup, weak=False,
                            dispatch_uid="drills-dumps-on-backup-deleted")
        job_ended.connect(restore_post_hooks, weak=False, dispatch_uid="hooks-restore-post")
