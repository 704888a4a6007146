"""Backup policies, their runs, notification settings and what was sent."""

from django.conf import settings
from django.db import models

from policies import retention


class BackupPolicy(models.Model):
    """Which volumes, when, how, and how many backups to keep.

    Kept in sync with a django-celery-beat PeriodicTask by `services.policy_save` so that
    beat (DatabaseScheduler) picks edits up without a restart.
    """

    class Selector(models.TextChoices):
        NAMES = "names", "Volume names"
        LABEL = "label", "Label selector"
        COMPOSE = "compose", "Compose project"

    class Compression(models.TextChoices):
        ZSTD = "zstd", "zstd (fast, smaller)"
        GZIP = "gzip", "gzip (readable everywhere)"

    name = models.CharField(max_length=100, unique=True)
    selector_kind = models.CharField(max_length=16, choices=Selector.choices, default=Selector.LABEL)
    selector_value = models.TextField()
    cron = models.CharField(max_length=120)
    timezone = models.CharField(max_length=64, default="UTC")
    compression = models.CharField(max_length=8, choices=Compression.choices, default=Compression.ZSTD)
    stop_containers = models.BooleanField(default=False)
    verify_after_backup = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True, db_index=True)

    keep_last = models.PositiveIntegerField(default=0)
    keep_daily = models.PositiveIntegerField(default=0)
    keep_weekly = models.PositiveIntegerField(default=0)
    keep_monthly = models.PositiveIntegerField(default=0)
    keep_yearly = models.PositiveIntegerField(default=0)
    max_age_days = models.PositiveIntegerField(default=0)
    # A covered volume is overdue when its last successful backup is older than the
    # schedule's longest gap plus this.
    overdue_grace_minutes = models.PositiveIntegerField(default=60)

    # Hooks (backups.hooks): commands exec'd in each running container of a volume
    # around its backup. Admins only set them (policies.forms.PolicyHooksForm).
    hook_pre = models.TextField(blank=True)
    hook_post = models.TextField(blank=True)
    hook_user = models.CharField(max_length=64, blank=True)
    hook_timeout_seconds = models.PositiveIntegerField(default=0)  # 0: HOOK_TIMEOUT_SECONDS
    hook_continue_on_failure = models.BooleanField(default=False)
    # Restore drills (policies.drills): every N days (0: never) the newest backup of each
    # covered volume is restored into a scratch volume and compared with its manifest;
    # `drill_probe`, if set, runs in a throw-away helper container with it at /data.
    drill_every_days = models.PositiveIntegerField(default=0)
    drill_probe = models.TextField(blank=True)

    # Where its backups go (null: the default repository), and a second repository each
    # backup is copied to after it succeeded (local + off-site).
    repository = models.ForeignKey("repositories.Repository", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="policies")
    copy_to = models.ForeignKey("repositories.Repository", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="copy_policies")

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Due times up to here have been checked for missed runs (moved on by the check).
    schedule_checked_until = models.DateTimeField(null=True, blank=True)
    # When the schedule last changed or the policy was enabled (overdue counts from here
    # for volumes that were never backed up).
    schedule_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"

    def __str__(self):
        return self.name

    @property
    def rules(self) -> retention.Rules:
        return retention.Rules(
            keep_last=self.keep_last, daily=self.keep_daily, weekly=self.keep_weekly,
            monthly=self.keep_monthly, yearly=self.keep_yearly, max_age_days=self.max_age_days,
        )

    @property
    def selection(self):
        from policies import selection

        return selection.parse(self.selector_kind, self.selector_value)

    @property
    def periodic_task_name(self) -> str:
        return f"cargohold-policy-{self.pk}"


class PolicyRunQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=PolicyRun.ACTIVE)


def _run_state():
    """A run's state, derived in SQL from what is the run's own and from its backup's job
    (and verify job), so pages and services filter and order on `status`, `finished_at`
    and `started_at` as if they were columns. The job rows are the only state machine:
    nothing copies their status onto the run."""
    from django.db.models import Case, F, Q, Value, When

    from jobs.models import Job

    S = PolicyRun.Status
    own = ~Q(outcome="")
    no_job = Q(job__isnull=True)
    job_active = Q(job__status__in=Job.ACTIVE)
    job_failed = ~Q(job__status=Job.Status.SUCCEEDED)
    verified = Q(verify_job__status=Job.Status.SUCCEEDED)
    verifying = Q(verify_job__isnull=True) | Q(verify_job__status__in=Job.ACTIVE)
    status = Case(
        When(own, then=F("outcome")),
        # Between the run row and its backup (one transaction), or a lost run that the
        # safety net ends.
        When(no_job, then=Value(S.QUEUED)),
        When(job_active, then=F("job__status")),
        When(job_failed, then=Value(S.FAILED)),
        When(verify_wanted=False, then=Value(S.SUCCEEDED)),
        When(verified, then=Value(S.SUCCEEDED)),
        When(verifying, then=Value(S.RUNNING)),
        default=Value(S.FAILED),
        output_field=models.CharField(),
    )
    finished_at = Case(
        When(own, then=F("outcome_at")),
        When(no_job | job_active, then=Value(None)),
        When(job_failed | Q(verify_wanted=False), then=F("job__finished_at")),
        default=F("verify_job__finished_at"),
        output_field=models.DateTimeField(),
    )
    return {"status": status, "finished_at": finished_at, "started_at": F("job__started_at")}


class PolicyRunManager(models.Manager.from_queryset(PolicyRunQuerySet)):
    def get_queryset(self):
        return super().get_queryset().annotate(**_run_state()).select_related("job", "verify_job", "backup")


def _derived(name: str):
    """`status`, `finished_at`, `started_at` of a run: the manager's annotation when the
    row came through it, else read once through the manager (one definition of the state)."""
    key = f"_run_state_{name}"

    def get(self):
        if key not in self.__dict__:
            if self.pk is None:  # not saved yet: only its own outcome is known
                return {"status": self.outcome or PolicyRun.Status.QUEUED, "finished_at": self.outcome_at}.get(name)
            return PolicyRun.objects.filter(pk=self.pk).values_list(name, flat=True).first()
        return self.__dict__[key]

    def set(self, value):  # only the manager's annotation sets it
        self.__dict__[key] = value

    return property(get, set)


class PolicyRun(models.Model):
    """One policy, one volume, one due time. Unique on those three, so a tick delivered
    twice (beat restarted, a message re-delivered after a worker died) never starts a
    second backup. Rows with an empty volume name are about the whole policy (a missed
    due time, a selection that matched nothing).

    A run reads its state through its backup's job (and its verify job): `status`,
    `started_at`, `finished_at` and `message` are derived, never copied. What is the
    run's own: `outcome` for a run that ended without its backup's job saying so
    (skipped, missed, could not start, could not verify, lost), whether it verifies,
    its pruning, and whether it was notified.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"
        MISSED = "missed", "missed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        MANUAL = "manual", "run now"
        CLI = "cli", "command line"

    class Prune(models.TextChoices):
        NONE = "", "—"
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        REFUSED = "refused", "nothing deleted"
        FAILED = "failed", "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    ENDED = (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.MISSED)
    # The ends a run can have of its own ("": it follows its jobs).
    OUTCOMES = [("", "follow the backup's job")] + [(s.value, s.label) for s in (Status.FAILED, Status.SKIPPED,
                                                                                     Status.MISSED)]

    policy = models.ForeignKey(BackupPolicy, on_delete=models.CASCADE, related_name="runs")
    volume_name = models.CharField(max_length=320, blank=True, db_index=True)
    scheduled_for = models.DateTimeField(db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    backup = models.ForeignKey(
        "backups.Backup", null=True, blank=True, on_delete=models.SET_NULL, related_name="policy_runs"
    )
    # The backup's id, kept when retention later deletes the backup row.
    backup_ref = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    # The backup's job: it outlives the backup row, so the run's state does too.
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Decided when the run starts (the policy's setting may change afterwards).
    verify_wanted = models.BooleanField(default=False)
    verify_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=OUTCOMES, default="", blank=True)
    outcome_message = models.TextField(blank=True)
    outcome_at = models.DateTimeField(null=True, blank=True)

    prune_state = models.CharField(max_length=16, choices=Prune.choices, default=Prune.NONE, blank=True,
                                   db_index=True)
    prune_started_at = models.DateTimeField(null=True, blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True)
    prune_deleted = models.JSONField(default=list, blank=True)  # [{"id":, "at":, "key":}]
    prune_message = models.TextField(blank=True)
    # The outcome was handed to notifications (so each run is notified at most once).
    notified = models.BooleanField(default=False)

    objects = PolicyRunManager()

    status = _derived("status")
    started_at = _derived("started_at")
    finished_at = _derived("finished_at")

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        base_manager_name = "objects"
        constraints = [
            models.UniqueConstraint(fields=["policy", "volume_name", "scheduled_for"], name="policy_run_once"),
        ]
        indexes = [models.Index(fields=["policy", "volume_name"], name="policyrun_policy_volume")]

    def __str__(self):
        return f"{self.policy} / {self.volume_name or '(policy)'} @ {self.scheduled_for:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def message(self) -> str:
        """What to say about the run: its own outcome's words, else its jobs'."""
        if self.outcome:
            return self.outcome_message
        job = self.job
        if job is None or job.is_active:
            return ""
        if job.status != job.Status.SUCCEEDED:
            return job.error or f"The backup was {job.status}."
        if self.verify_wanted:
            verify = self.verify_job
            if verify is None or verify.is_active:
                return "Verifying the stored archive."
            if verify.status != verify.Status.SUCCEEDED:
                return f"The backup was made but its verification failed: {verify.error or verify.status}"
        size = self.backup.size_bytes if self.backup is not None else None
        return (f"Backup #{self.backup_ref}" + (f", {size} bytes stored" if size is not None else "")
                + (", verified again" if self.verify_wanted else "") + ".")

    def refresh_from_db(self, *args, **kwargs):
        """Also forget the derived state and the cached jobs: they may have moved on."""
        super().refresh_from_db(*args, **kwargs)
        for key in [k for k in self.__dict__ if k.startswith("_run_state_")]:
            del self.__dict__[key]
        for name in ("job", "verify_job", "backup"):
            self._state.fields_cache.pop(name, None)


class VolumeAlert(models.Model):
    """An overdue episode of a volume: opened when it becomes overdue (and notified once),
    closed when a backup succeeds or the volume is no longer covered."""

    volume_name = models.CharField(max_length=320, db_index=True)
    kind = models.CharField(max_length=16, default="overdue")
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["volume_name", "kind"], condition=models.Q(closed_at__isnull=True), name="one_open_alert"
            ),
        ]


class NotificationSettings(models.Model):
    """One row: where notifications go and which events are sent."""

    singleton = models.PositiveSmallIntegerField(default=1, unique=True)
    email_enabled = models.BooleanField(default=False)
    email_to = models.TextField(blank=True, help_text="Addresses, separated by commas or new lines.")
    webhook_enabled = models.BooleanField(default=False)
    webhook_url = models.URLField(max_length=1000, blank=True)
    on_failure = models.BooleanField(default=True)
    on_overdue = models.BooleanField(default=True)
    on_success = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    @property
    def email_recipients(self) -> list[str]:
        import re

        return [a for a in re.split(r"[\s,;]+", self.email_to or "") if a]

    @classmethod
    def load(cls) -> "NotificationSettings":
        obj = cls.objects.filter(singleton=1).first()
        return obj if obj is not None else cls(singleton=1)


class Notification(models.Model):
    class Event(models.TextChoices):
        RUN_FAILED = "run_failed", "run failed"
        RUN_SUCCEEDED = "run_succeeded", "run succeeded"
        VOLUME_OVERDUE = "volume_overdue", "volume overdue"
        TEST = "test", "test"

    event = models.CharField(max_length=32, choices=Event.choices)
    subject = models.CharField(max_length=255)
    text = models.TextField()
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class Delivery(models.Model):
    """One notification through one channel; retried by its task with a backoff."""

    class Channel(models.TextChoices):
        EMAIL = "email", "email"
        WEBHOOK = "webhook", "webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    target = models.TextField()  # the URL or the addresses, as they were when it was queued
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
