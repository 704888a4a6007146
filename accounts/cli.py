"""Who a management command acts as, with the same permission rules as the pages."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts import scoping
from accounts.actors import cli_actor_name
from accounts.services import audit_record


def acting_user(username: str | None, perm: str, what: str, *, object_type: str = "", obj=None,
                global_only: bool = False):
    """(user or None, requested_by): the account named by --user, else cli:<login name> —
    whoever runs manage.py on the host already has the database.

    The account must hold `perm` (accounts.scoping: its teams' roles, or its global role):
    on `obj` when given (another team's object is "not found", as a page's 404), in one of
    its teams at least otherwise, globally with `global_only` (creating, pruning volumes)."""
    if not username:
        return None, cli_actor_name()
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"No active Cargohold user named {username!r}.")
    if obj is not None and scoping.role_for(user, obj) is None and scoping.can_anywhere(user, perm):
        raise CommandError(f"No {object_type or 'object'} {_label(obj)} is known to user {username}.")
    allowed = (scoping.can_globally(user, perm) if global_only
               else scoping.can(user, perm, obj) if obj is not None else scoping.can_anywhere(user, perm))
    if not allowed:
        audit_record(action="permission_denied", actor=user, object_type=object_type,
                     object_name=_label(obj) if obj is not None else "(cli)",
                     params={"permission": perm, "via": "cli"}, result="denied")
        raise CommandError(f"User {username} may not {what}.")
    return user, username


def _label(obj) -> str:
    return obj if isinstance(obj, str) else f"#{obj.pk}" if not hasattr(obj, "name") else str(obj.name)
