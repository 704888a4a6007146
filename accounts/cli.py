"""Who a management command acts as, with the same permission rules as the pages."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts.actors import cli_actor_name
from accounts.services import audit_record


def acting_user(username: str | None, perm: str, what: str, *, object_type: str = ""):
    """(user or None, requested_by): the account named by --user (must hold `perm`), else
    cli:<login name> — whoever runs manage.py on the host already has the database."""
    if not username:
        return None, cli_actor_name()
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"No active Cargohold user named {username!r}.")
    if not user.has_perm(perm):
        audit_record(action="permission_denied", actor=user, object_type=object_type, object_name="(cli)",
                     params={"permission": perm, "via": "cli"}, result="denied")
        raise CommandError(f"User {username} may not {what}.")
    return user, username
