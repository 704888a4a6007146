"""Docker hosts: the engines Cargohold manages, each served by its own worker.

How the worker reaches its engine: `url` blank is the worker's own local socket (DOCKER_HOST
of that machine, the usual case for a worker beside its engine); `tcp://HOST:PORT` needs TLS
client certificates (the key stored encrypted, project.crypto); `ssh://user@host` uses the
worker's own SSH keys. The web tier never connects to any of them: only the host's worker
reads this row to open its engine connection.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from project import crypto


class Host(models.Model):
    name = models.SlugField(max_length=63, unique=True)
    url = models.CharField(max_length=512, blank=True, default="")
    tls_ca_cert = models.TextField(blank=True, default="")  # PEM, public
    tls_client_cert = models.TextField(blank=True, default="")  # PEM, public
    tls_client_key_enc = models.TextField(blank=True, default="")  # PEM, encrypted (project.crypto)
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    # The host's worker, as its heartbeat reported it (hosts.heartbeat).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker_started_at = models.DateTimeField(null=True, blank=True)
    worker_stopped_at = models.DateTimeField(null=True, blank=True)
    worker_name = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_default(self) -> bool:
        return self.name == settings.DEFAULT_HOST_NAME

    @property
    def connection_text(self) -> str:
        if not self.url:
            return "the worker's local Docker socket" + (f" ({settings.DOCKER_HOST})" if self.is_default and settings.DOCKER_HOST else "")
        return self.url + (" (TLS client certificate)" if self.tls_client_key_enc else "")

    def set_client_key(self, pem: str) -> None:
        self.tls_client_key_enc = crypto.encrypt(pem)

    def client_key(self) -> str:
        return crypto.decrypt(self.tls_client_key_enc)

    @property
    def online(self) -> bool:
        return host_online(self.heartbeat_at, self.worker_stopped_at)

    @property
    def offline_since(self):
        """When the worker was last heard of (None: never); only meaningful when offline."""
        if self.worker_stopped_at and (not self.heartbeat_at or self.worker_stopped_at >= self.heartbeat_at):
            return self.worker_stopped_at
        return self.heartbeat_at


def host_online(heartbeat_at, stopped_at, *, now=None) -> bool:
    """A host is online while its worker's heartbeat is fresh and it did not say it stopped."""
    if heartbeat_at is None:
        return False
    if stopped_at is not None and stopped_at >= heartbeat_at:
        return False
    now = now or timezone.now()
    return now - heartbeat_at <= timedelta(seconds=settings.HOST_OFFLINE_SECONDS)


def default_host() -> Host:
    host, _ = Host.objects.get_or_create(name=settings.DEFAULT_HOST_NAME)
    return host


def default_host_id() -> int:
    """The default for every row that belongs to a host (a volume, a container, an engine
    status): a single-host install never names one."""
    return default_host().pk


class Transfer(models.Model):
    """A volume copied (or moved) to another host: a backup of the source on its host, a
    restore of that backup into a new volume on the target host, and, for a move, the
    removal of the source once the copy succeeded (hosts.transfers).

    The steps' jobs are the only state of a run (DESIGN.md rule 3): `progress()` reads it
    from them. This row keeps what was asked, the steps it started, and `error` when a
    step could not even start (the restore or the removal refused). `ended_at` says the
    end was noticed and audited (once, claimed like a job's end_handled), not how it ended.
    """

    source_ref = models.CharField(max_length=320, db_index=True)
    target_ref = models.CharField(max_length=320, db_index=True)
    repository = models.ForeignKey("repositories.Repository", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="transfers")
    remove_source = models.BooleanField(default=False)
    backup = models.ForeignKey("backups.Backup", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="transfers")
    restore = models.ForeignKey("restores.Restore", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="transfers")
    removal_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="transfer_removals")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    requested_by = models.CharField(max_length=150, blank=True, default="")  # the CLI's name for itself
    trigger = models.CharField(max_length=16, default="user")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    error = models.TextField(blank=True, default="")
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"transfer #{self.pk} {self.source_ref} → {self.target_ref}"

    @property
    def source_host(self) -> str:
        from hosts.refs import host_of

        return host_of(self.source_ref)

    @property
    def target_host(self) -> str:
        from hosts.refs import host_of

        return host_of(self.target_ref)

    @property
    def started_by(self) -> str:
        return self.created_by.get_username() if self.created_by_id else (self.requested_by or self.trigger)

    def progress(self):
        from hosts.transfers import transfer_progress

        return transfer_progress(self)
