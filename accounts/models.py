from django.conf import settings
from django.db import models


class Capability(models.Model):
    """Holds Cargohold's permissions; it has no table of its own.

    Roles are Django groups holding some of these permissions (see accounts.roles),
    so a deployment can also grant a single capability to one user.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_inventory", "View volumes, containers, backups and jobs"),
            ("run_backup", "Run backups"),
            ("restore_new", "Restore into a new volume"),
            ("download_archive", "Download and import archives"),
            ("manage_volumes", "Create, remove and prune volumes"),
            ("restore_in_place", "Restore a volume in place"),
            ("manage_policies", "Edit backup policies and schedules"),
            ("manage_users", "Manage users and read the audit trail"),
        ]


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit trail is append-only.")

    def delete(self):
        raise PermissionError("The audit trail is append-only.")


class AuditEvent(models.Model):
    """One action someone (or something) took. Append-only: never updated or deleted."""

    class Result(models.TextChoices):
        OK = "ok", "ok"
        ERROR = "error", "error"
        DENIED = "denied", "denied"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the trail still names the person after the account is deleted.
    actor_name = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True)
    object_name = models.CharField(max_length=512, blank=True, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=8, choices=Result.choices, default=Result.OK)
    error = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        default_permissions = ("view",)

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.object_name}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit trail is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit trail is append-only.")


class Team(models.Model):
    """A group of people owning some volumes: which ones is decided by its rules (TeamRule);
    the result is kept in VolumeOwnership (accounts.ownership) so that every page reads it
    through one indexed column instead of evaluating each rule over every volume."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class TeamRule(models.Model):
    """One rule of a team: the volumes it matches belong to the team (rules of a team add up)."""

    class Kind(models.TextChoices):
        LABEL = "label", "Label selector"  # `team=shop`, `key`, several comma separated (all must match)
        COMPOSE = "compose", "Compose project"  # labelled with it, or mounted by its containers

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LABEL)
    value = models.CharField(max_length=500)

    class Meta:
        ordering = ["team", "kind", "value"]
        constraints = [models.UniqueConstraint(fields=["team", "kind", "value"], name="accounts_teamrule_unique")]

    def __str__(self):
        return f"{self.team}: {self.get_kind_display()} {self.value}"


class TeamMembership(models.Model):
    """A user's role in one team: the same three roles as the global ones, on the team's volumes."""

    class Role(models.TextChoices):
        VIEWER = "Viewer", "Viewer"
        OPERATOR = "Operator", "Operator"
        ADMIN = "Admin", "Admin"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        ordering = ["team", "user"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="accounts_membership_unique")]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"


class VolumeOwnership(models.Model):
    """Volume X belongs to team T: what the team's rules (accounts.ownership.rule_q) match,
    kept so that a team-scoped page reads one indexed column instead of evaluating label
    JSON and Compose mounts over 10,000 volumes at every request (issue 16). Derived only:
    written by accounts.ownership.ownership_refresh alone, in the transaction of whatever
    changed what it derives from (the mirror sync of the volume's host, a rule's change).
    Never edited by hand; a team's deletion cascades."""

    volume = models.ForeignKey("volumes.Volume", on_delete=models.CASCADE, related_name="ownerships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="ownerships")

    class Meta:
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["volume", "team"], name="accounts_ownership_unique")]
        # A team's volumes (every scoped page): team first, the volume id read from the index alone.
        indexes = [models.Index(fields=["team", "volume"], name="accounts_ownership_team")]

    def __str__(self):
        return f"{self.volume_id} of {self.team_id}"
