"""The backup catalogue. Storage holds the truth (archive + manifest); these rows index it.

Every Backup has a job, and its run's state (status, error, finished_at, who started it)
is the job's (jobs.state.JobState): `backup_start` creates both queued, the worker's
runner moves the job on. A safety backup has its own child job; a backup found in
storage by the catalogue rescan gets a succeeded job of kind "backup_found".
"""

import uuid

from django.db import models

from jobs.models import Job
from jobs.state import JobState, JobStateManager
from volumes.models import Volume


class Backup(JobState, models.Model):
    class Origin(models.TextChoices):
        MANUAL = "manual", "manual"  # a person, from a page or the CLI
        SCHEDULE = "schedule", "schedule"
        SAFETY = "safety", "safety"  # taken automatically before a restore in place
        IMPORTED = "imported", "imported"  # an archive uploaded or found in storage

    class Compression(models.TextChoices):
        ZSTD = "zstd", "zstd"
        GZIP = "gzip", "gzip"

    # Names files in storage and matches manifests to rows when the catalogue is rebuilt.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # PROTECT: a job is never deleted under the backup whose state it holds.
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="backups")
    # SET_NULL and the name as text: a backup outlives its volume's record.
    volume = models.ForeignKey(Volume, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups")
    volume_name = models.CharField(max_length=320, db_index=True)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.MANUAL, db_index=True)
    compression = models.CharField(max_length=8, choices=Compression.choices, default=Compression.ZSTD)

    # Where the archive is: the storage backend's name and the key within it; `location`
    # is what a person uses to find it (the file's path for local storage).
    storage = models.CharField(max_length=32, default="local")
    # The repository it is in (null: the built-in local folder, for rows from before
    # repositories). For a restic repository `key` is empty and `snapshot_id` names it.
    repository = models.ForeignKey("repositories.Repository", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="backups")
    snapshot_id = models.CharField(max_length=64, blank=True, db_index=True)
    # A policy's copy of a backup into its second repository points at the original.
    copy_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="copies")
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

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When the work began, after the wait for the volume's lock (the job's started_at is
    # when a worker took it): a backup's duration and its archive's name count from here.
    started_at = models.DateTimeField(null=True, blank=True)

    objects = JobStateManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        base_manager_name = "objects"
        indexes = [models.Index(fields=["volume_name", "-created_at"])]

    def __str__(self):
        return f"backup #{self.pk} of {self.volume_name} ({self.status})"

    @property
    def is_restorable(self) -> bool:
        # An archive's key, or a restic snapshot's id (repositories.restic).
        return self.status == self.Status.SUCCEEDED and not self.missing and bool(self.key or self.snapshot_id)

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


class BackupEntry(models.Model):
    """One file, folder or link of a backup (the file index): written from the tar
    headers the walker reads at backup time, or from `restic ls --json`; browsed on the
    backup's page and by `list_files`. `offset` is where the member's first header
    block (pax or long-name records included) starts in the uncompressed tar stream."""

    class Kind(models.TextChoices):
        FILE = "f", "file"
        DIR = "d", "folder"
        SYMLINK = "l", "symlink"
        HARDLINK = "h", "hard link"
        OTHER = "o", "other"  # devices, fifos, sockets

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="entries")
    path = models.TextField()  # relative to the volume's root: "app/config.yml"
    parent = models.TextField(default="")  # "" for the root's children: "app"
    name = models.TextField()
    kind = models.CharField(max_length=1, choices=Kind.choices)
    size = models.BigIntegerField(default=0)
    mode = models.PositiveIntegerField(default=0)
    uid = models.PositiveBigIntegerField(default=0)  # ids reach 2**32 - 1
    gid = models.PositiveBigIntegerField(default=0)
    mtime = models.FloatField(default=0)
    link = models.TextField(blank=True, default="")
    offset = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["backup", "parent", "name"]),
            # Where a folder's members end in the tar (backups.file_index.subtree_end).
            models.Index(fields=["backup", "offset"], name="backups_entry_offset_idx"),
        ]

    def __str__(self):
        return self.path
