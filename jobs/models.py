from django.conf import settings
from django.db import models


class StartedBy:
    """`started_by` for rows with `created_by` (a user or None) and `trigger` (cli, schedule...)."""

    @property
    def started_by(self) -> str:
        if self.created_by_id:
            return self.created_by.get_username()
        return self.trigger


class Job(StartedBy, models.Model):
    """Every long operation is one row: created queued by a service, moved on by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        SKIPPED = "skipped", "skipped"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # What the job acts on, for display and filtering ("volume", "shop_db").
    target_type = models.CharField(max_length=32, blank=True)
    target = models.CharField(max_length=512, blank=True, db_index=True)
    # The Docker host whose worker runs it (hosts.refs.queue_for): its engine holds the volume.
    host = models.CharField(max_length=63, blank=True, default="", db_index=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # What the job printed along the way (hooks' output, recipe dumps): the tail of it,
    # bounded (jobs.runner LOG_MAX_CHARS), scrubbed, written by the heartbeat.
    log = models.TextField(blank=True)

    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # user / cli / schedule / system: who or what started it.
    trigger = models.CharField(max_length=16, default="user")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=255, blank=True)
    # The kind's on_end ran (jobs.services.job_end): claimed once, so it never runs twice.
    end_handled = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self):
        return f"{self.kind} #{self.pk} {self.target} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int | None:
        """None when the total is unknown, or wrong (more done than the total: a volume
        measured before it grew): the page shows the amount so far, not a bar stuck at 100 %."""
        if not self.progress_total or self.progress_done > self.progress_total:
            return None
        return max(0, min(100, int(self.progress_done * 100 / self.progress_total)))

    @property
    def duration(self):
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            from django.utils import timezone

            end = timezone.now()
        return end - self.started_at


class ResourceLock(models.Model):
    """One operation per resource (a volume) at a time: an owner and an expiry.

    The row's unique `resource` is the lock; an expired row may be taken over, so a
    worker that died holding a lock blocks others only until the expiry.
    """

    resource = models.CharField(max_length=600, unique=True)
    owner = models.CharField(max_length=255)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.resource} held by {self.owner} until {self.expires_at:%H:%M:%S}"
