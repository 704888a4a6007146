"""Repositories: where backups go (the local folder, an S3 bucket, a restic repository).

Credentials and restic passwords are stored encrypted (project.crypto) and never shown
again after saving; `secrets()` decrypts them for a worker's use.
"""

from __future__ import annotations

from django.db import models

from project import crypto
from repositories.location import Location, parse_location


class Repository(models.Model):
    class Format(models.TextChoices):
        ARCHIVE = "archive", "archives (tar + zstd, plain tar restores them)"
        RESTIC = "restic", "restic (deduplicated, encrypted)"

    name = models.SlugField(max_length=64, unique=True)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.ARCHIVE)
    # A local path, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] (repositories.location).
    url = models.CharField(max_length=1024)
    region = models.CharField(max_length=64, blank=True, default="")
    path_style = models.BooleanField(default=True)  # self-hosted S3 servers want path-style URLs
    # Encrypted tokens (project.crypto); "" when not set.
    access_key_id_enc = models.TextField(blank=True, default="")
    secret_access_key_enc = models.TextField(blank=True, default="")
    password_enc = models.TextField(blank=True, default="")  # restic's repository password
    is_default = models.BooleanField(default=False)
    # The built-in local folder: its path is BACKUP_ROOT, read at use (url is informative).
    builtin = models.BooleanField(default=False)
    # restic: what `restic check` reads of the data (restic's --read-data-subset, e.g. "5%").
    verify_read_subset = models.CharField(max_length=16, blank=True, default="")
    # What the last contact found (restic version, bucket reachable...), shown on the page.
    status_text = models.TextField(blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True),
                                    name="one_default_repository"),
        ]

    def __str__(self):
        return self.name

    @property
    def location(self) -> Location:
        return parse_location(self.url)

    @property
    def is_restic(self) -> bool:
        return self.format == self.Format.RESTIC

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3:")

    def set_secrets(self, *, access_key_id: str | None = None, secret_access_key: str | None = None,
                    password: str | None = None) -> None:
        """Encrypt and keep what is given (None leaves a secret as it is)."""
        if access_key_id is not None:
            self.access_key_id_enc = crypto.encrypt(access_key_id)
        if secret_access_key is not None:
            self.secret_access_key_enc = crypto.encrypt(secret_access_key)
        if password is not None:
            self.password_enc = crypto.encrypt(password)

    def secrets(self) -> dict[str, str]:
        """Decrypted, for a worker's use only: never log, render or pass on a command line."""
        return {
            "access_key_id": crypto.decrypt(self.access_key_id_enc),
            "secret_access_key": crypto.decrypt(self.secret_access_key_enc),
            "password": crypto.decrypt(self.password_enc),
        }

    @property
    def has_credentials(self) -> bool:
        return bool(self.access_key_id_enc and self.secret_access_key_enc)
