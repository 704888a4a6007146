from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts import roles, scoping
from insights import selectors
from volumes.selectors import volume_detail


@require_GET
def overview(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    context = {"o": selectors.overview(who=request), "team": scoping.current_team(request)}
    template = "insights/overview.html#figures" if request.htmx else "insights/overview.html"
    return render(request, template, context)


def graph_poll_url(filters: selectors.GraphFilters, version: str) -> str:
    params = {
        "project": filters.project_param, "unused": "1" if filters.show_unused else "0",
        "volume": filters.volume or "", "container": filters.container or "", "v": version,
    }
    return f"{reverse('graph')}?{urlencode({k: v for k, v in params.items() if v})}"


@require_GET
def graph(request):
    """The sharing graph; htmx polls get 204 (no swap) while the mirror is unchanged."""
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    filters = selectors.GraphFilters.from_query(request.GET)
    version = selectors.mirror_version()
    if request.htmx and request.GET.get("v") == version:
        return HttpResponse(status=204)
    view = selectors.sharing_graph(filters=filters, rows=selectors.mirror_rows(who=request))
    context = {"view": view, "filters": filters, "poll_url": graph_poll_url(filters, version)}
    template = "insights/_graph_live.html" if request.htmx else "insights/graph.html"
    return render(request, template, context)


@require_GET
def risks(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    last = selectors.last_successful_backups()
    context = {"groups": selectors.risk_groups(rows=selectors.mirror_rows(who=request), last=last), "backups_available": last is not None}
    return render(request, "insights/risks.html", context)


@require_GET
def volume_usage(request, name: str):
    """The volume page's size-history card for one range (day / week / month)."""
    volume = scoping.require_on(request, roles.VIEW_INVENTORY, volume_detail(name=name), object_type="volume",
                                object_name=name, missing=f"No volume named {name!r} is known.")
    history = selectors.usage_history(volume=volume, range_key=request.GET.get("range", "day"))
    return render(request, "insights/_usage.html", {"volume": volume, "history": history})
