"""The one place views check permissions.

`get_*_for_user` style helpers in each app use `require` so that every denial is
answered with 403 and written to the audit trail.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied

from accounts.models import AuditEvent
from accounts.services import audit_record


def require(request, perm: str, *, object_type: str = "", object_name: str = "") -> None:
    """Raise PermissionDenied (403) unless the user holds `perm`; audit the denial."""
    user = request.user
    if user.is_authenticated and user.has_perm(perm):
        return
    audit_record(
        action="permission_denied",
        request=request,
        object_type=object_type,
        object_name=object_name or request.path,
        params={"permission": perm, "method": request.method, "path": request.path},
        result=AuditEvent.Result.DENIED,
    )
    raise PermissionDenied(denial_message(perm))


def denial_message(perm: str) -> str:
    return f"Your role does not allow this ({perm.split('.', 1)[-1].replace('_', ' ')})."


def permission_required(perm: str):
    """View decorator: login is enforced by middleware; this checks the role."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            require(request, perm)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
