"""Restore drills: a backup restored into a scratch volume, compared with its manifest,
optionally probed, and the scratch volume removed. A drill's state is its job's."""

from django.conf import settings
from django.db import models

from jobs.models import Job
from jobs.state import JobState, JobStateManager


class Drill(JobState, models.Model):
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="drills")
    policy = models.ForeignKey("policies.BackupPolicy", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="drills")
    # SET_NULL and the id: a drill's record outlives the backup retention deletes.
    backup = models.ForeignKey("backups.Backup", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="drills")
    backup_ref = models.PositiveBigIntegerField(null=True, blank=True)
    volume_name = models.CharField(max_length=320, db_index=True)  # the volume the backup is of
    # Named before it is created (a crash still knows what to remove), cleared once removed.
    scratch_volume = models.CharField(max_length=320, blank=True, db_index=True)
    checks = models.JSONField(default=list, blank=True)  # [{"check", "ok", "detail"}]
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = JobStateManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        base_manager_name = "objects"

    def __str__(self):
        return f"drill #{self.pk} of {self.volume_name} ({self.status})"


class DumpChoice(models.Model):
    """A volume's opt-in to a consistent dump (backups.recipes) in one of its containers,
    taken with each of its backups (set on the volume's page). By container name: a
    recreated container (a new id) keeps the choice."""

    volume_name = models.CharField(max_length=320, db_index=True)
    container_name = models.CharField(max_length=255)
    recipe = models.CharField(max_length=600)  # backups.recipes.recipe_id: "postgres", "sqlite:/data/app.db"
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["volume_name", "container_name", "recipe"]
        constraints = [models.UniqueConstraint(fields=["volume_name", "container_name", "recipe"],
                                               name="one_dump_choice_per_recipe")]

    def __str__(self):
        return f"{self.recipe} dump of {self.container_name} with backups of {self.volume_name}"
