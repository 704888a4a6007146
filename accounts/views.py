from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts import roles, selectors
from accounts.models import AuditEvent
from accounts.permissions import require


@require_GET
def audit_list(request):
    """The audit trail, newest first; read-only (no view of this app changes an event)."""
    require(request, roles.MANAGE_USERS, object_type="audit", object_name="audit trail")
    filters = selectors.AuditFilters.from_query(request.GET)
    page = selectors.audit_page(filters=filters, page=request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page, "filters": filters, "actions": selectors.audit_actions(),
        "results": AuditEvent.Result.values, "query": query.urlencode(),
    }
    return render(request, "accounts/audit.html#table" if request.htmx else "accounts/audit.html", context)
