import math

from django.contrib import messages
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.utils.timezone import now
from django.views.decorators.http import require_GET, require_POST

from accounts import roles, scoping, selectors, services
from accounts.models import AuditEvent


@require_GET
def audit_list(request):
    """The audit trail, newest first; read-only (no view of this app changes an event)."""
    scoping.require_anywhere(request, roles.MANAGE_USERS, object_type="audit", object_name="audit trail")
    filters = selectors.AuditFilters.from_query(request.GET)
    page = selectors.audit_page(filters=filters, page=request.GET.get("page"), who=request)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page, "filters": filters, "actions": selectors.audit_actions(),
        "results": AuditEvent.Result.values, "query": query.urlencode(),
    }
    return render(request, "accounts/audit.html#table" if request.htmx else "accounts/audit.html", context)


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout response (AXES_LOCKOUT_CALLABLE): the login page, saying why and
    for how long, with 429. Called for /accounts/login/ and /admin/login/ alike."""
    username = str((credentials or {}).get("username") or request.POST.get("username", ""))[:150]
    address = services.client_address(request)
    ends = [lock.until for lock in selectors.lockouts(kind="user", name=username)]
    ends += [lock.until for lock in selectors.lockouts(kind="address", name=address or "")]
    ends = [end for end in ends if end is not None]
    minutes = max(1, math.ceil((max(ends) - now()).total_seconds() / 60)) if ends else None
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "locked_out": True, "locked_minutes": minutes, "next": request.POST.get("next", ""),
    }
    return render(request, "accounts/login.html", context, status=429)


@require_GET
def lockout_list(request):
    """Accounts and addresses locked out of logging in now, for an Admin to lift."""
    scoping.require_global(request, roles.MANAGE_USERS, object_type="lockout", object_name="login lockouts")
    return render(request, "accounts/lockouts.html", {"lockouts": selectors.lockouts()})


@require_POST
def lockout_lift(request):
    scoping.require_global(request, roles.MANAGE_USERS, object_type="lockout", object_name="login lockouts")
    kind, name = request.POST.get("kind", ""), request.POST.get("name", "").strip()
    if kind not in ("user", "address") or not name:
        messages.error(request, "Choose a locked account or address to lift.")
    elif not selectors.is_locked_out(kind=kind, name=name):
        messages.error(request, f"{'Account' if kind == 'user' else 'Address'} {name} is not locked out.")
    else:
        services.lockout_lift(kind=kind, name=name)
        messages.success(request, f"Lifted the lockout of {name}: it can log in again.")
    return redirect("lockouts")
