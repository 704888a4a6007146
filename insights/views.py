from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts import roles, scoping
from hosts.selectors import host_param, many_hosts
from insights import selectors, snapshot
from policies.selectors import health_figures
from volumes.selectors import volume_detail


@require_GET
def overview(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    # The whole catalogue's figures, reused while nothing they read changed. After a change,
    # where counting them is slow, the last ones come back marked stale: the page shows them
    # with their time and its htmx asks at once for `?recount=1`, which counts (insights.snapshot).
    recount = request.GET.get("recount") == "1"  # htmx's, or the stale line's link without script
    viewer = snapshot.viewer_key(request)
    o = snapshot.counted("overview", f"{viewer}:{selectors.risk_settings()!r}",
                         lambda: selectors.overview(who=request), stale_ok=not recount)
    health = snapshot.counted("health-figures", viewer, lambda: health_figures(who=request), stale_ok=not recount)
    context = {"o": o.value, "health": health.value, "stale": o.stale or health.stale,
               "counted_at": min(o.counted_at, health.counted_at), "team": scoping.current_team(request),
               "hosts": selectors.host_summaries(who=request) if many_hosts() else []}
    template = "insights/overview.html#figures" if request.htmx else "insights/overview.html"
    return render(request, template, context)


def graph_poll_url(filters: selectors.GraphFilters, version: str) -> str:
    params = {
        "project": filters.project_param, "unused": "1" if filters.show_unused else "0",
        "volume": filters.volume or "", "container": filters.container or "", "host": filters.host, "v": version,
    }
    return f"{reverse('graph')}?{urlencode({k: v for k, v in params.items() if v})}"


@require_GET
def graph(request):
    """The sharing graph; htmx polls get 204 (no swap) while the mirror is unchanged."""
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    filters = selectors.GraphFilters.from_query(request.GET, many_hosts=many_hosts())
    version = selectors.mirror_version()
    if request.htmx and request.GET.get("v") == version:
        return HttpResponse(status=204)
    view = selectors.sharing_graph(filters=filters, rows=selectors.mirror_rows(who=request, host=filters.host))
    context = {"view": view, "filters": filters, "poll_url": graph_poll_url(filters, version)}
    template = "insights/_graph_live.html" if request.htmx else "insights/graph.html"
    return render(request, template, context)


@require_GET
def risks(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    host = host_param(request.GET)

    def compute():
        last = selectors.last_successful_backups()
        rows = selectors.mirror_rows(who=request, host=host)
        return selectors.risk_groups(rows=rows, last=last), last is not None

    # Every present volume's risks: reused while nothing they read changed; after a change,
    # where finding them is slow, the last ones come marked stale and the page asks for
    # `?recount=1` at once, as the overview does (insights.snapshot).
    more = request.GET.get("more", "")
    # Counted for `?more=` too: the rest of a group is never read from stale findings.
    recount = request.GET.get("recount") == "1" or bool(more and request.htmx)
    found = snapshot.counted("risks", f"{snapshot.viewer_key(request)}:{host}:{selectors.risk_settings()!r}",
                             compute, stale_ok=not recount)
    groups, backups_available = found.value
    # ?more=<kind>: that group's findings after the first 10, which the page sends only when
    # asked (its "Show N more"): 200 rows in each of several groups took most of its time.
    if more and request.htmx:
        group = next((g for g in groups if g.kind.slug == more), None)
        return render(request, "insights/_finding_more.html", {"g": group, "host": host})
    context = {"groups": groups, "backups_available": backups_available, "host": host, "more": more,
               "stale": found.stale, "counted_at": found.counted_at}
    return render(request, "insights/risks.html#groups" if recount and request.htmx else "insights/risks.html", context)


@require_GET
def volume_usage(request, name: str):
    """The volume page's size-history card for one range (day / week / month)."""
    volume = scoping.require_on(request, roles.VIEW_INVENTORY, volume_detail(name=name), object_type="volume",
                                object_name=name, missing=f"No volume named {name!r} is known.")
    history = selectors.usage_history(volume=volume, range_key=request.GET.get("range", "day"))
    return render(request, "insights/_usage.html", {"volume": volume, "history": history})
