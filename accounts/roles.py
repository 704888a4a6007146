"""The three roles. Groups are created by a migration and re-ensured by `ensure_roles`."""

VIEW_INVENTORY = "accounts.view_inventory"
RUN_BACKUP = "accounts.run_backup"
RESTORE_NEW = "accounts.restore_new"
DOWNLOAD_ARCHIVE = "accounts.download_archive"
MANAGE_VOLUMES = "accounts.manage_volumes"
RESTORE_IN_PLACE = "accounts.restore_in_place"
MANAGE_POLICIES = "accounts.manage_policies"
MANAGE_USERS = "accounts.manage_users"

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMIN = "Admin"

_VIEWER_PERMS = ["view_inventory"]
_OPERATOR_PERMS = _VIEWER_PERMS + ["run_backup", "restore_new", "download_archive"]
_ADMIN_PERMS = _OPERATOR_PERMS + [
    "manage_volumes",
    "restore_in_place",
    "manage_policies",
    "manage_users",
]
ROLE_PERMISSIONS = {VIEWER: _VIEWER_PERMS, OPERATOR: _OPERATOR_PERMS, ADMIN: _ADMIN_PERMS}

_PERMISSION_NAMES = {
    "view_inventory": "View volumes, containers, backups and jobs",
    "run_backup": "Run backups",
    "restore_new": "Restore into a new volume",
    "download_archive": "Download and import archives",
    "manage_volumes": "Create, remove and prune volumes",
    "restore_in_place": "Restore a volume in place",
    "manage_policies": "Edit backup policies and schedules",
    "manage_users": "Manage users and read the audit trail",
}


def ensure_roles(apps=None) -> None:
    """Create (or repair) the role groups and their permissions. Idempotent.

    Takes the migration's `apps` when run from a migration; permissions are created
    here because Django only creates them after all migrations have run.
    """
    if apps is None:
        from django.contrib.auth.models import Group, Permission
        from django.contrib.contenttypes.models import ContentType
    else:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
        ContentType = apps.get_model("contenttypes", "ContentType")

    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="capability")
    perms = {}
    for codename, name in _PERMISSION_NAMES.items():
        perms[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*(perms[c] for c in codenames))


def role_of(user) -> str | None:
    """The highest role a user holds, for display."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in (ADMIN, OPERATOR, VIEWER):
        if role in names:
            return role
    return None
