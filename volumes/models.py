"""The mirror: what the engine had at the last sync. Pages read only these tables."""

from django.db import models

from hosts.models import Host, default_host_id
from hosts.refs import split_ref


COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
PROTECT_LABEL = "cargohold.protect"


def labels_protected(labels: dict | None) -> bool:
    """`cargohold.protect=true`: Cargohold never removes or prunes the volume."""
    return str((labels or {}).get(PROTECT_LABEL, "")).strip().lower() == "true"


def mount_hint(last_mount: dict | None, container_count: int) -> str:
    """"mounted by shop-worker at /cache" (or "last mounted by …" once no container does):
    what makes an anonymous volume's 64 hex digits recognisable."""
    m = last_mount or {}
    if not m.get("container"):
        return ""
    where = f"{m['container']} at {m.get('destination') or '?'}"
    if not container_count:
        return f"last mounted by {where}"
    others = container_count - 1
    return f"mounted by {where}" + (f" and {others} other container{'s' if others != 1 else ''}" if others > 0 else "")


class VolumeQuerySet(models.QuerySet):
    def present(self):
        return self.filter(gone_since__isnull=True)


class Volume(models.Model):
    # The volume's reference (hosts.refs): the engine's name on the default host,
    # `host:name` on any other, so it stays unique across hosts.
    name = models.CharField(max_length=320, unique=True)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, default=default_host_id, related_name="volumes")
    driver = models.CharField(max_length=255, default="local")
    mountpoint = models.TextField(blank=True)
    scope = models.CharField(max_length=32, blank=True)
    options = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    # Everything else the engine's inspect reported (Status of plugin drivers...).
    status = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    anonymous = models.BooleanField(default=False, db_index=True)

    size_bytes = models.BigIntegerField(null=True, blank=True, db_index=True)
    size_measured_at = models.DateTimeField(null=True, blank=True)

    # Denormalised by the sync so the list filters and sorts in SQL with 1,000s of rows.
    container_count = models.PositiveIntegerField(default=0, db_index=True)
    search_text = models.TextField(blank=True)
    # Who mounts it where ({"container", "destination"}), kept by the sync after its
    # containers are gone: an anonymous volume's 64 hex digits say nothing, this does.
    last_mount = models.JSONField(default=dict, blank=True)

    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Set when the engine no longer has it: the row stays so its backups keep their owner.
    gone_since = models.DateTimeField(null=True, blank=True, db_index=True)
    # The engine's message the last time Cargohold failed to use it (an NFS server down).
    last_error = models.TextField(blank=True)

    objects = VolumeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_gone(self) -> bool:
        return self.gone_since is not None

    @property
    def engine_name(self) -> str:
        """The name the volume has on its engine (what `docker volume ls` prints there)."""
        return split_ref(self.name)[1]

    @property
    def host_name(self) -> str:
        return split_ref(self.name)[0]

    @property
    def compose_project(self) -> str:
        return self.labels.get(COMPOSE_PROJECT_LABEL, "")

    @property
    def is_protected(self) -> bool:
        return labels_protected(self.labels)

    @property
    def mount_hint(self) -> str:
        return mount_hint(self.last_mount, self.container_count)

    @property
    def display_options(self) -> dict:
        """Driver options for pages, secrets masked (a CIFS password in `o`)."""
        from project.redact import scrubbed

        return scrubbed(self.options)


class ContainerQuerySet(models.QuerySet):
    def present(self):
        return self.filter(gone_since__isnull=True)


class Container(models.Model):
    # Unique per host, as a volume's name is (the same engine registered as two hosts, e.g.
    # by its socket and over ssh, lists the same containers for each).
    engine_id = models.CharField(max_length=64, db_index=True)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, default=default_host_id, related_name="containers")
    name = models.CharField(max_length=255, db_index=True)
    image = models.CharField(max_length=512, blank=True)
    state = models.CharField(max_length=32, blank=True, db_index=True)
    status = models.CharField(max_length=255, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    compose_project = models.CharField(max_length=255, blank=True, db_index=True)
    compose_service = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    # `--tmpfs` mounts (destination -> options), read once by inspect: the list omits them.
    host_tmpfs = models.JSONField(null=True, blank=True)
    size_rw = models.BigIntegerField(null=True, blank=True)
    size_measured_at = models.DateTimeField(null=True, blank=True)

    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    gone_since = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = ContainerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["host", "engine_id"], name="volumes_container_host_engine_id")]

    def __str__(self):
        return self.name

    @property
    def short_id(self) -> str:
        return self.engine_id[:12]

    @property
    def is_running(self) -> bool:
        return self.state in ("running", "restarting", "paused")


class Mount(models.Model):
    class Kind(models.TextChoices):
        VOLUME = "volume", "volume"
        BIND = "bind", "bind"
        TMPFS = "tmpfs", "tmpfs"
        NPIPE = "npipe", "npipe"
        CLUSTER = "cluster", "cluster"

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="mounts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    volume = models.ForeignKey(Volume, null=True, blank=True, on_delete=models.SET_NULL, related_name="mounts")
    source = models.TextField(blank=True)
    destination = models.TextField()
    read_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["destination"]

    def __str__(self):
        return f"{self.container} {self.kind}:{self.source} -> {self.destination}{' (ro)' if self.read_only else ''}"

    @property
    def key(self) -> tuple:
        return (self.container_id, self.kind, self.source, self.destination, self.read_only)


class EngineStatus(models.Model):
    """One row per host: what the last syncs said about its engine (the banner, the overview)."""

    host = models.OneToOneField(Host, on_delete=models.CASCADE, default=default_host_id, related_name="engine_status")
    engine_id = models.CharField(max_length=255, blank=True)
    host_name = models.CharField(max_length=255, blank=True)
    server_version = models.CharField(max_length=64, blank=True)
    api_version = models.CharField(max_length=16, blank=True)
    storage_driver = models.CharField(max_length=64, blank=True)
    docker_root_dir = models.TextField(blank=True)
    volume_plugins = models.JSONField(default=list, blank=True)

    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_sync_ms = models.PositiveIntegerField(null=True, blank=True)

    sizes_measured_at = models.DateTimeField(null=True, blank=True)
    sizes_ms = models.PositiveIntegerField(null=True, blank=True)
    sizes_error = models.TextField(blank=True)

    def __str__(self):
        return f"engine {self.host_name or '?'} (last sync {self.last_success_at})"

    @classmethod
    def get(cls, host_name: str | None = None) -> "EngineStatus":
        """The status of `host_name` (default: the host this process's worker serves)."""
        from hosts.refs import worker_host_name

        host, _ = Host.objects.get_or_create(name=host_name or worker_host_name())
        obj, _ = cls.objects.get_or_create(host=host)
        return obj

    @classmethod
    def of_default(cls) -> "EngineStatus | None":
        from django.conf import settings

        return cls.objects.filter(host__name=settings.DEFAULT_HOST_NAME).select_related("host").first()

    @property
    def reachable(self) -> bool:
        return bool(self.last_success_at) and not self.last_error
