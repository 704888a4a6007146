"""What the API answers: explicit fields (nothing leaks by being added to a model later),
secrets in driver options masked as on the pages."""


from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import AuditEvent
from backups.files_selectors import mode_text
from backups.models import Backup, BackupEntry
from hosts.models import Host
from hosts.refs import host_of
from jobs import kinds
from jobs.models import Job
from policies.models import BackupPolicy, PolicyRun
from project.redact import scrubbed
from restores.models import Restore
from volumes.models import Container, Mount, Volume

STATUSES = [s.value for s in Job.Status]


class JobSerializer(serializers.ModelSerializer):
    label = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=STATUSES, read_only=True)
    started_by = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    percent = serializers.IntegerField(read_only=True, allow_null=True)
    params = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "url", "kind", "label", "status", "is_active", "target_type", "target", "host", "params", "result",
                  "error", "progress_done", "progress_total", "progress_message", "percent", "started_by",
                  "trigger", "created_at", "started_at", "finished_at", "cancel_requested"]
        read_only_fields = fields

    def get_label(self, job) -> str:
        return kinds.get(job.kind).label

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_params(self, job):
        return scrubbed(job.params or {})

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_result(self, job):
        return scrubbed(job.result or {})

    def get_url(self, job) -> str:
        return reverse("api:job-detail", args=[job.pk])


class MountSerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container.name", read_only=True)
    volume = serializers.CharField(source="volume.name", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Mount
        fields = ["container", "volume", "kind", "source", "destination", "read_only"]
        read_only_fields = fields


class VolumeSerializer(serializers.ModelSerializer):
    protected = serializers.BooleanField(source="is_protected", read_only=True)
    host = serializers.CharField(source="host_name", read_only=True,
                                 help_text="The Docker host the volume is on; `name` is `host:name` on any but the default host.")
    engine_name = serializers.CharField(read_only=True, help_text="The volume's name on its engine.")
    compose_project = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Volume
        fields = ["name", "url", "host", "engine_name", "driver", "labels", "compose_project", "anonymous", "size_bytes",
                  "size_measured_at", "container_count", "protected", "created_at", "gone_since"]
        read_only_fields = fields

    def get_url(self, volume) -> str:
        return reverse("api:volume-detail", args=[volume.name])


class VolumeDetailSerializer(VolumeSerializer):
    options = serializers.SerializerMethodField()
    mounts = MountSerializer(many=True, read_only=True, source="visible_mounts")
    protection = serializers.SerializerMethodField()

    class Meta(VolumeSerializer.Meta):
        fields = VolumeSerializer.Meta.fields + ["options", "mountpoint", "last_seen_at", "last_error", "mounts",
                                                 "protection"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_options(self, volume):
        return volume.display_options

    @extend_schema_field({"type": "string", "nullable": True,
                          "enum": ["ok", "overdue", "failed", "unprotected", "unprotected-in-use", None]})
    def get_protection(self, volume):
        protection = self.context.get("protection")
        return protection.state if protection is not None else None


class ContainerSerializer(serializers.ModelSerializer):
    mounts = MountSerializer(many=True, read_only=True)
    host = serializers.CharField(source="host.name", read_only=True, help_text="The Docker host it runs on.")

    class Meta:
        model = Container
        fields = ["engine_id", "name", "host", "image", "state", "status", "compose_project", "compose_service",
                  "created_at", "mounts"]
        read_only_fields = fields


class BackupSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=STATUSES, read_only=True)
    error = serializers.CharField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    started_by = serializers.CharField(source="job.started_by", read_only=True)
    job = serializers.IntegerField(source="job_id", read_only=True)
    restorable = serializers.BooleanField(source="is_restorable", read_only=True)
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    host = serializers.SerializerMethodField()

    class Meta:
        model = Backup
        fields = ["id", "url", "volume_name", "host", "status", "error", "job", "origin", "compression", "storage",
                  "location", "missing", "stop_containers", "bytes_expected", "bytes_read", "data_bytes",
                  "size_bytes", "file_count", "sha256", "verified", "verified_at", "verify_error", "keep",
                  "restorable", "started_by", "created_at", "started_at", "finished_at", "download_url"]
        read_only_fields = fields

    def get_url(self, backup) -> str:
        return reverse("api:backup-detail", args=[backup.pk])

    def get_host(self, backup) -> str:
        """The host of the backed-up volume (its reference's, hosts.refs)."""
        return host_of(backup.volume_name)

    def get_download_url(self, backup) -> str | None:
        return reverse("api:backup-download", args=[backup.pk]) if backup.is_restorable else None


class BackupDetailSerializer(BackupSerializer):
    job = JobSerializer(read_only=True)
    manifest = serializers.JSONField(read_only=True)

    class Meta(BackupSerializer.Meta):
        fields = BackupSerializer.Meta.fields + ["manifest"]
        read_only_fields = fields


class BackupEntrySerializer(serializers.ModelSerializer):
    """One entry of a backup's file index."""

    kind = serializers.ChoiceField(choices=BackupEntry.Kind.choices, read_only=True,
                                   help_text="f file, d folder, l symlink, h hard link, o other (device, fifo, "
                                             "socket).")
    mode_text = serializers.SerializerMethodField()
    modified_at = serializers.SerializerMethodField()

    class Meta:
        model = BackupEntry
        fields = ["path", "parent", "name", "kind", "size", "mode", "mode_text", "uid", "gid", "mtime",
                  "modified_at", "link"]
        read_only_fields = fields

    def get_mode_text(self, entry) -> str:
        return mode_text(entry)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_modified_at(self, entry):
        from backups.file_index import entry_time

        when = entry_time(entry.mtime)
        return when.isoformat() if when else None


class BackupFilesSerializer(serializers.Serializer):
    """A folder of a backup (paged) or, with `q`, the entries whose name holds it."""

    path = serializers.CharField(help_text="The folder listed (\"\" is the volume's root).")
    query = serializers.CharField(help_text="The search, or \"\".")
    indexed = serializers.BooleanField(help_text="False: the backup has no file index (made before file indexes).")
    count = serializers.IntegerField(help_text="Entries in the folder, or hits (at most 500) of the search.")
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = BackupEntrySerializer(many=True)


class RestoreSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=STATUSES, read_only=True)
    error = serializers.CharField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    job = JobSerializer(read_only=True)
    backup = serializers.IntegerField(source="backup_id", read_only=True, allow_null=True)
    options = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    host = serializers.SerializerMethodField()

    class Meta:
        model = Restore
        fields = ["id", "url", "backup", "backup_label", "mode", "volume_name", "host", "phase", "status", "error", "job",
                  "driver", "options", "labels", "allow_devices", "file_count", "partial", "rollback_pending",
                  "restart_pending", "outcome", "created_at", "finished_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_options(self, restore):
        return restore.display_options

    def get_url(self, restore) -> str:
        return reverse("api:restore-detail", args=[restore.pk])

    def get_host(self, restore) -> str:
        """The host of the target volume: the one whose worker runs the restore."""
        return host_of(restore.volume_name)


class PolicyRunSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=[s.value for s in PolicyRun.Status], read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    backup = serializers.IntegerField(source="backup_ref", read_only=True, allow_null=True)
    job = serializers.IntegerField(source="job_id", read_only=True, allow_null=True)

    class Meta:
        model = PolicyRun
        fields = ["id", "volume_name", "scheduled_for", "trigger", "status", "backup", "job", "outcome_message",
                  "created_at", "finished_at"]
        read_only_fields = fields


class PolicySerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = BackupPolicy
        fields = ["id", "url", "name", "selector_kind", "selector_value", "cron", "timezone", "compression",
                  "stop_containers", "verify_after_backup", "enabled", "keep_last", "keep_daily", "keep_weekly",
                  "keep_monthly", "keep_yearly", "max_age_days", "overdue_grace_minutes", "created_at",
                  "updated_at"]
        read_only_fields = fields

    def get_url(self, policy) -> str:
        return reverse("api:policy-detail", args=[policy.pk])


class PolicyDetailSerializer(PolicySerializer):
    runs = serializers.SerializerMethodField()
    next_runs = serializers.ListField(child=serializers.DateTimeField(), read_only=True,
                                      source="api_next_runs")

    class Meta(PolicySerializer.Meta):
        fields = PolicySerializer.Meta.fields + ["next_runs", "runs"]
        read_only_fields = fields

    @extend_schema_field(PolicyRunSerializer(many=True))
    def get_runs(self, policy):
        return PolicyRunSerializer(self.context.get("runs", []), many=True).data


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor_name", "action", "object_type", "object_name", "params", "result", "error", "ip"]
        read_only_fields = fields


# --- requests ---------------------------------------------------------------------------------


class BackupStartSerializer(serializers.Serializer):
    volume = serializers.CharField(max_length=255, help_text="The volume's name.")
    stop_containers = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Stop the containers using it meanwhile; null or absent: the volume's default (its "
                  "cargohold.stop-during-backup label).")
    compression = serializers.ChoiceField(choices=[c.value for c in Backup.Compression], default="zstd")
    repository = serializers.CharField(max_length=64, required=False, allow_blank=True, default="",
                                       help_text="The repository's name; absent or empty: the default one.")


class StringMapField(serializers.DictField):
    child = serializers.CharField(allow_blank=True, max_length=4096)


class RestoreNewSerializer(serializers.Serializer):
    volume_name = serializers.CharField(
        max_length=320, help_text="The new volume's name (must not exist); `host:name` makes it on another host.")
    driver = serializers.CharField(max_length=255, required=False, allow_null=True, default=None,
                                   help_text="Absent: the manifest's (Admins), else local.")
    options = StringMapField(required=False, allow_null=True, default=None)
    labels = StringMapField(required=False, allow_null=True, default=None)
    allow_devices = serializers.BooleanField(default=False)


class RestoreInPlaceSerializer(serializers.Serializer):
    confirm_name = serializers.CharField(max_length=320, help_text="Type the volume's name to confirm.")
    allow_devices = serializers.BooleanField(default=False)
    confirm_imported = serializers.BooleanField(
        default=False, help_text="Required for an imported archive: you accept its content as is.")


class BackupStartedSerializer(serializers.Serializer):
    backup = BackupSerializer()
    job = JobSerializer()


class PolicyRunStartedSerializer(serializers.Serializer):
    started = serializers.IntegerField(help_text="How many backups were queued.")
    runs = PolicyRunSerializer(many=True)


class HostSerializer(serializers.ModelSerializer):
    """A Docker host as everyone may read it: how its worker reaches the engine (URL, TLS
    certificates and key) is never part of it."""

    is_default = serializers.BooleanField(read_only=True)
    online = serializers.BooleanField(read_only=True, help_text="Its worker's heartbeat is recent.")
    offline_since = serializers.SerializerMethodField()
    engine_version = serializers.SerializerMethodField()
    volume_count = serializers.SerializerMethodField()

    class Meta:
        model = Host
        fields = ["name", "description", "is_default", "online", "offline_since", "heartbeat_at", "engine_version",
                  "volume_count"]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_offline_since(self, host):
        """When its worker was last heard of, while offline; null while online (or never heard of)."""
        since = None if host.online else host.offline_since
        return serializers.DateTimeField().to_representation(since) if since else None

    def get_engine_version(self, host) -> str:
        status = getattr(host, "engine_status", None)
        return status.server_version if status else ""

    def get_volume_count(self, host) -> int:
        """Its present volumes that the caller can see."""
        return self.context.get("volume_counts", {}).get(host.pk, 0)
