from accounts import roles, scoping


def user_role(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Buttons show where the user holds the permission somewhere (their teams' roles or a
    # global one); the server checks each object again (accounts.scoping).
    perms = ["run_backup", "restore_new", "download_archive", "manage_volumes", "restore_in_place",
             "manage_policies", "manage_users"]
    switcher = scoping.switcher_teams(user)
    return {
        "user_role": roles.role_of(user),
        "can": {name: scoping.can_anywhere(user, f"accounts.{name}") for name in perms},
        "can_global": {name: scoping.can_globally(user, f"accounts.{name}") for name in perms},
        # The navigation's team switcher, where there is a choice (several teams, or an Admin's).
        "switcher_teams": switcher if len(switcher) > 1 or scoping.is_global_admin(user) else [],
        "current_team": scoping.current_team(request) if switcher else None,
    }
