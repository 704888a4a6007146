"""Restores: one row per restore, beside its job, holding what a crash must know.

The job (jobs.Job) is the run's state: status, error, times, creator, progress, cancel
(read here through jobs.state.JobState). This row records what was asked (source backup,
mode, target, volume settings) and, written *before* each risky step, how far it got:
whether we created the target volume, which containers we stopped, when the volume was
emptied, whether the content was written. The kind's on_end (restores.worker) and the
recovery step (restores.recovery.restores_recover) read exactly these fields.
"""

import uuid

from django.db import models

from backups.models import Backup
from jobs.models import Job
from jobs.state import JobState, JobStateManager


class Restore(JobState, models.Model):
    class Mode(models.TextChoices):
        NEW = "new", "into a new volume"
        IN_PLACE = "in_place", "in place"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="restores")
    # The source; its id and name stay readable after the backup is deleted.
    backup = models.ForeignKey(Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="restores")
    backup_label = models.CharField(max_length=300, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices)
    volume_name = models.CharField(max_length=320, db_index=True)  # the target
    phase = models.CharField(max_length=32, blank=True)  # the step it is in or ended in

    # A new volume's settings (from the manifest, as edited before starting).
    driver = models.CharField(max_length=255, blank=True)
    options = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    allow_devices = models.BooleanField(default=False)
    # Only these files or folders (relative to the volume's root); [] = everything.
    paths = models.JSONField(default=list, blank=True)

    # What the check of the archive found.
    layout = models.CharField(max_length=8, blank=True)
    file_count = models.PositiveIntegerField(null=True, blank=True)
    tar_bytes = models.BigIntegerField(null=True, blank=True)

    # Recovery state, each written before the step it describes.
    volume_create_requested = models.BooleanField(default=False)  # new: we asked the engine to create it
    volume_created_at = models.CharField(max_length=64, blank=True)  # the engine's CreatedAt when we made it
    partial = models.BooleanField(default=False, db_index=True)  # new: half-filled volume left behind
    partial_removed_at = models.DateTimeField(null=True, blank=True)
    stopped_containers = models.JSONField(default=list, blank=True)  # [{"id": ..., "name": ...}]
    restart_pending = models.BooleanField(default=False, db_index=True)
    restart_error = models.TextField(blank=True)
    safety_backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="safety_for"
    )
    emptied_at = models.DateTimeField(null=True, blank=True)  # in place: the old content is gone from here on
    written_at = models.DateTimeField(null=True, blank=True)  # the archive's content is in the volume
    rollback_pending = models.BooleanField(default=False, db_index=True)  # needs the safety backup put back
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    rollback_error = models.TextField(blank=True)

    outcome = models.TextField(blank=True)  # one sentence a person reads: what happened to the volume

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = JobStateManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        base_manager_name = "objects"

    def __str__(self):
        return f"restore #{self.pk} of {self.backup_label} {self.get_mode_display()} {self.volume_name} ({self.status})"

    # `backups.consistency.containers_stopped` works on any row with these fields: a restore stops
    # every running container that uses the volume.
    stop_containers = True

    @property
    def started_at(self):
        """When a worker took the restore up: the job's start."""
        return self.job.started_at if self.job_id else None

    @property
    def in_place(self) -> bool:
        return self.mode == self.Mode.IN_PLACE

    @property
    def display_options(self) -> dict:
        """Driver options for pages, secrets masked (typed for a queued restore, kept until the
        worker has created the volume)."""
        from project.redact import scrubbed

        return scrubbed(self.options)

    @property
    def needs_attention(self) -> bool:
        return self.partial or self.rollback_pending or self.restart_pending
