"""The API's one door to the permission layer: every check and every queryset of api/
goes through here, so the API sees exactly what the pages see.

The layer is accounts.scoping (teams: another team's object is 404, a role too low is
403, audited). Lists start from its `visible_*` querysets; objects come from
`get_visible_or_404` and then `require_on`.
"""

from __future__ import annotations

from rest_framework import permissions

from accounts import roles, scoping
from accounts.models import AuditEvent
from backups.models import Backup
from jobs.models import Job
from policies.models import BackupPolicy
from restores.models import Restore
from volumes.models import Container, Mount, Volume


class ApiAccess(permissions.BasePermission):
    """Authenticated, and a read-only token only reads. Roles are checked by each view
    through the functions below (the same checks as the pages)."""

    message = "This API token is read-only: it may only GET. Create a read-write token on /accounts/tokens/."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        token = request.auth
        if getattr(token, "read_only", False) and request.method not in permissions.SAFE_METHODS:
            return False
        return True


def require_anywhere(request, perm: str, *, object_type: str = "", object_name: str = "") -> None:
    """For lists and creations: 403 (audited) unless the user holds `perm` somewhere."""
    scoping.require_anywhere(request, perm, object_type=object_type, object_name=object_name)


_VISIBLE = {
    Volume: scoping.visible_volumes, Container: scoping.visible_containers, Mount: scoping.visible_mounts,
    Backup: scoping.visible_backups, Restore: scoping.visible_restores, Job: scoping.visible_jobs,
    BackupPolicy: scoping.visible_policies, AuditEvent: scoping.visible_audit,
}


def visible(request, model):
    """What the caller may see of `model`: the layer's queryset, over all of the user's teams
    (the API has no team switcher). Every list starts here."""
    return _VISIBLE[model](request.user)


def _get(request, queryset, perm: str, object_type: str, object_name: str, **lookup):
    """403 (audited) when the role allows `perm` nowhere; 404 when there is no such object
    or it is another team's (the same text: no existence leaks); 403 when the role on it
    is too low. As the pages."""
    obj = queryset.filter(**lookup).first()
    scoping.require_on(request, perm, obj, object_type=object_type, object_name=object_name,
                       missing=f"No such {object_type} ({object_name}), or not one you can see.")
    return obj


def get_volume(request, name: str, perm: str = roles.VIEW_INVENTORY) -> Volume:
    return _get(request, visible(request, Volume), perm, "volume", name, name=name)


def get_backup(request, backup_id: int, perm: str = roles.VIEW_INVENTORY) -> Backup:
    qs = visible(request, Backup).select_related("job__created_by", "volume")
    return _get(request, qs, perm, "backup", str(backup_id), pk=backup_id)


def get_restore(request, restore_id: int, perm: str = roles.VIEW_INVENTORY) -> Restore:
    qs = visible(request, Restore).select_related("job__created_by", "backup")
    return _get(request, qs, perm, "restore", str(restore_id), pk=restore_id)


def get_policy(request, policy_id: int, perm: str = roles.VIEW_INVENTORY) -> BackupPolicy:
    return _get(request, visible(request, BackupPolicy), perm, "policy", str(policy_id), pk=policy_id)


def get_job(request, job_id: int, perm: str = roles.VIEW_INVENTORY) -> Job:
    return _get(request, visible(request, Job).select_related("created_by"), perm, "job", str(job_id), pk=job_id)


def require_on(request, perm: str, obj, *, object_type: str = "", object_name: str = "") -> None:
    scoping.require_on(request, perm, obj, object_type=object_type, object_name=object_name)
