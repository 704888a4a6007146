from accounts import roles


def user_role(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_role": roles.role_of(user),
        "can": {
            "run_backup": user.has_perm(roles.RUN_BACKUP),
            "restore_new": user.has_perm(roles.RESTORE_NEW),
            "download_archive": user.has_perm(roles.DOWNLOAD_ARCHIVE),
            "manage_volumes": user.has_perm(roles.MANAGE_VOLUMES),
            "restore_in_place": user.has_perm(roles.RESTORE_IN_PLACE),
            "manage_policies": user.has_perm(roles.MANAGE_POLICIES),
            "manage_users": user.has_perm(roles.MANAGE_USERS),
        },
    }
