import logging

from accounts.models import AuditEvent
from project.redact import scrubbed, scrubbed_text

logger = logging.getLogger(__name__)

def actor_name(user, fallback: str) -> str:
    """The name to record for an action: the user's, else `fallback` (e.g. cli:<login>)."""
    if user is not None and getattr(user, "is_authenticated", False):
        return user.get_username()
    return fallback


def audit_record(
    *,
    action: str,
    actor=None,
    object_type: str = "",
    object_name: str = "",
    params: dict | None = None,
    result: str = AuditEvent.Result.OK,
    error: str = "",
    request=None,
    actor_name: str = "",
) -> AuditEvent:
    """Append one event to the audit trail. Never raises into the caller's flow.

    `actor_name` names an actor that is not a user account (``cli:root``); an actor
    account's own name wins.
    """
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    ip = None
    if request is not None:
        ip = client_address(request)
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else str(actor_name)[:150],
        action=action,
        object_type=object_type,
        object_name=str(object_name)[:512],
        params=scrubbed(params or {}),
        result=result,
        error=scrubbed_text(error)[:4000],
        ip=ip,
    )


def client_address(request) -> str | None:
    """The client's address, for login throttling (AXES_CLIENT_IP_CALLABLE) and the trail.

    REMOTE_ADDR, unless settings.TRUSTED_PROXY_COUNT reverse proxies stand in front: each
    appends the address it received from to X-Forwarded-For, so the client is the Nth entry
    from the right; entries further left are whatever the client chose to send.
    """
    import ipaddress

    from django.conf import settings

    remote = request.META.get("REMOTE_ADDR") or None
    count = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if count <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < count:
        return remote  # not through all our proxies: the peer is the client
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote


def lockout_lift(*, kind: str, name: str) -> int:
    """Lift the login lockout of an account (`kind="user"`) or an address (`"address"`):
    forget its failed attempts. Returns how many attempt records went.

    The audit row is written by accounts.signals, like a lift by `manage.py axes_reset_*`,
    so every way of lifting is recorded the same way, with the current actor.
    """
    from axes.utils import reset

    if kind == "user":
        return reset(username=name)
    if kind == "address":
        return reset(ip=name)
    raise ValueError(f"Unknown lockout kind {kind!r}.")
