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
        elif isinstance(value, str) and "password=" in value.lower():
            # Mount option strings such as "username=u,password=p,vers=3.0".
            clean[key] = ",".join(
                "password=***" if part.lower().startswith("password=") else part for part in value.split(",")
            )
        else:
            clean[key] = value
    return clean


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
) -> AuditEvent:
    """Append one event to the audit trail. Never raises into the caller's flow."""
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    ip = None
    if request is not None:
        ip = request.META.get("REMOTE_ADDR") or None
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        object_type=object_type,
        object_name=str(object_name)[:512],
        params=_scrub(params),
        result=result,
        error=str(error)[:4000],
        ip=ip,
    )
