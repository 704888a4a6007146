from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from accounts import roles
from accounts.permissions import require
from volumes import selectors


def _get_volume_for_user(request, name: str):
    """404 when the volume isn't in the mirror; 403 (audited) when the role may not view."""
    require(request, roles.VIEW_INVENTORY, object_type="volume", object_name=name)
    volume = selectors.volume_detail(name=name)
    if volume is None:
        raise Http404(f"No volume named {name!r} is known.")
    return volume


@require_GET
def home(request):
    return redirect("volume_list")


@require_GET
def volume_list(request):
    require(request, roles.VIEW_INVENTORY)
    filters = selectors.VolumeFilters.from_query(request.GET)
    page = selectors.volume_page(filters=filters, page=request.GET.get("page"))
    context = {"page": page, "filters": filters, "sorts": selectors.VOLUME_SORTS}
    template = "volumes/list.html#table" if request.htmx else "volumes/list.html"
    return render(request, template, context)


@require_GET
def volume_detail(request, name: str):
    volume = _get_volume_for_user(request, name)
    context = {"volume": volume, "mounts": selectors.volume_mounts(volume=volume)}
    template = "volumes/detail.html#live" if request.htmx else "volumes/detail.html"
    return render(request, template, context)


@require_GET
def container_list(request):
    require(request, roles.VIEW_INVENTORY)
    q = request.GET.get("q", "").strip()[:200]
    containers = selectors.container_list(q=q, project=request.GET.get("project", "")[:255])
    context = {"containers": containers, "q": q}
    template = "volumes/containers.html#table" if request.htmx else "volumes/containers.html"
    return render(request, template, context)
