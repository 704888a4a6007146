import logging

from accounts.models import AuditEvent

logger = logging.getLogger(__name__)

_SECRET_MARKERS = ("password", "secret", "token", "key", "credential", "passwd")


def _scrub(params: dict | None) -> dict:
    """Drop values of parameters that look like secrets (CIFS passwords in driver options...)."""
    if not params:
        return {}
    clean = {}
    for key, value in params.items():
        lowered = str(key).lower()
        if any(marker in lowered for marker in _SECRET_MARKERS):
            clean[key] = "***"
        elif isinstance(value, dict):
            clean[key] = _scrub(value)
        elif isinstance(value, str) and ("password=" in value.lower() or "pass=" in value.lower()):
            # Mount option strings such as "username=u,password=p,vers=3.0" (CIFS also takes "pass=").
            clean[key] = ",".join(
                part.split("=", 1)[0] + "=***" if part.lower().startswith(("password=", "pass=")) else part
                for part in value.split(",")
            )
        else:
            clean[key] = value
    return clean


def secrets_scrubbed(params: dict | None) -> dict:
    """A copy of `params` with secret-looking values masked (for job rows, pages)."""
    return _scrub(params)


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
        ip = request.META.get("REMOTE_ADDR") or None
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else str(actor_name)[:150],
        action=action,
        object_type=object_type,
        object_name=str(object_name)[:512],
        params=_scrub(params),
        result=result,
        error=str(error)[:4000],
        ip=ip,
    )
