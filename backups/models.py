"""The backup catalogue. Storage holds the truth (archive + manifest); these rows index it.

A Backup is created queued by `services.backup_start` together with its `jobs.Job`
(progress, heartbeat, cancel, error live on the job while it runs); the worker moves
the Backup through running -> succeeded / failed / cancelled. `rescan_backups` can
rebuild the succeeded rows from the manifests in storage.
"""

import uuid

from django.conf import settings
from django.db import models

from jobs.models import Job, StartedBy
from volumes.models import Volume


class Backup(StartedBy, models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Origin(models.TextChoices):
        MANUAL = "manual", "manual"  # a person, from a page or the CLI
        SCHEDULE = "schedule", "schedule"
        SAFETY = "safety", "safety"  # taken automatically before a restore in place
        IMPORTED = "imported", "imported"  # an archive uploaded or found in storage

    class Compression(models.TextChoices):
        ZSTD = "zstd", "zstd"
        GZIP = "gzip", "gzip"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    # Names files in storage and matches manifests to rows when the catalogue is rebuilt.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups")
    # SET_NULL and the name as text: a backup outlives its volume's record.
    volume = models.ForeignKey(Volume, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups")
    volume_name = models.CharField(max_length=255, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.MANUAL, db_index=True)
    compression = models.CharField(max_length=8, choices=Compression.choices, default=Compression.ZSTD)

    # Where the archive is: the storage backend's name and the key within it; `location`
    # is what a person uses to find it (the file's path for local storage).
    storage = models.CharField(max_length=32, default="local")
    key = models.CharField(max_length=1024, blank=True)
    location = models.TextField(blank=True)
    missing = models.BooleanField(default=False)  # the archive was not found at the last rescan

    # Consistency option: requested, and what was actually stopped (written BEFORE
    # stopping, so a crash still knows what to start again).
    stop_containers = models.BooleanField(default=False)
    stopped_containers = models.JSONField(default=list, blank=True)  # [{"id": ..., "name": ...}]
    restart_pending = models.BooleanField(default=False, db_index=True)
    restart_error = models.TextField(blank=True)

    bytes_expected = models.BigIntegerField(null=True, blank=True)  # the volume's size when started
    bytes_read = models.BigIntegerField(default=0)  # the engine's tar stream
    data_bytes = models.BigIntegerField(null=True, blank=True)  # sum of the files' sizes
    size_bytes = models.BigIntegerField(null=True, blank=True)  # stored (compressed) bytes
    file_count = models.PositiveIntegerField(null=True, blank=True)  # entries that are not directories
    sha256 = models.CharField(max_length=64, blank=True)

    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    verify_error = models.TextField(blank=True)

    keep = models.BooleanField(default=False)  # retention never deletes it
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.CharField(max_length=16, default="user")  # user / cli / schedule / system / rescan
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["volume_name", "-created_at"])]

    def __str__(self):
        return f"backup #{self.pk} of {self.volume_name} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def is_restorable(self) -> bool:
        return self.status == self.Status.SUCCEEDED and not self.missing and bool(self.key)

    @property
    def duration(self):
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def ratio(self) -> float | None:
        """Stored bytes per byte of tar stream (0.4 = the archive is 40 % of the data)."""
        if not self.size_bytes or not self.bytes_read:
            return None
        return self.size_bytes / self.bytes_read

    @property
    def ratio_percent(self) -> int | None:
        ratio = self.ratio
        return None if ratio is None else round(ratio * 100)


    @property
    def file_name(self) -> str:
        """The archive's file name (also the download's)."""
        return self.key.rsplit("/", 1)[-1] if self.key else ""
