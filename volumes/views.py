from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from accounts import roles, scoping
from hosts import refs
from hosts.selectors import host_param
from jobs import kinds
from jobs.models import Job
from jobs.polling import jobs_active_on, poll_response
from project.errors import Refused
from volumes import selectors, services
from volumes.forms import PRESETS, PruneConfirmForm, VolumeCreateForm, VolumeRemoveForm


def _get_volume_for_user(request, name: str):
    """404 when the volume isn't in the mirror or is another team's; 403 (audited) when the
    role may not view (accounts.scoping)."""
    return scoping.require_on(request, roles.VIEW_INVENTORY, selectors.volume_detail(name=name),
                              object_type="volume", object_name=name, missing=f"No volume named {name!r} is known.")


@require_GET
def volume_list(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    filters = selectors.VolumeFilters.from_query(request.GET)
    page = selectors.volume_page(filters=filters, page=request.GET.get("page"), who=request)
    context = {"page": page, "filters": filters, "sorts": selectors.VOLUME_SORTS,
               "unowned": scoping.unowned_names(v.name for v in page),  # (only global Admins see those)
               "any_active": jobs_active_on(targets=[v.name for v in page])}  # sets the poll's pace
    template = "volumes/list.html#table" if request.htmx else "volumes/list.html"
    return render(request, template, context)


@require_GET
def volume_detail(request, name: str):
    volume = _get_volume_for_user(request, name)
    context = {"volume": volume, "mounts": selectors.volume_mounts(volume=volume),
               "unowned": scoping.is_unowned(volume),
               "any_active": jobs_active_on(targets=[volume.name])}  # sets the poll's pace
    template = "volumes/detail.html#live" if request.htmx else "volumes/detail.html"
    return render(request, template, context)


@require_GET
def container_list(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    q = request.GET.get("q", "").strip()[:200]
    host = host_param(request.GET)
    page = selectors.container_page(page=request.GET.get("page"), q=q, project=request.GET.get("project", "")[:255],
                                    host=host, who=request)
    context = {"containers": page, "page": page, "q": q, "host": host}
    template = "volumes/containers.html#table" if request.htmx else "volumes/containers.html"
    return render(request, template, context)


# --- lifecycle: create, remove, prune (Admins: MANAGE_VOLUMES) -------------------------


def _get_lifecycle_job(request, job_id: int) -> Job:
    job = Job.objects.select_related("created_by").filter(pk=job_id, kind__in=services.LIFECYCLE_KINDS).first()
    return scoping.require_on(request, roles.MANAGE_VOLUMES, job, object_type="job", object_name=str(job_id),
                              missing="No such volume job.")


def _job_context(job: Job) -> dict:
    return {"job": job, "kind": kinds.get(job.kind), "poll_url": reverse("volume_job", args=[job.pk])}


@require_http_methods(["GET", "POST"])
def volume_create(request):
    scoping.require_global(request, roles.MANAGE_VOLUMES, object_type="volume", object_name="(new volume)")
    form, job = VolumeCreateForm(), None
    if request.method == "POST" and request.POST.get("preset"):
        form = VolumeCreateForm.with_preset(request.POST, request.POST["preset"])
    elif request.method == "POST":
        form = VolumeCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            job = services.volume_create_start(
                name=data["name"], driver=data["driver"], options=data["options"], labels=data["labels"],
                check_mount=data["check_mount"], user=request.user, host=data["host"],
            )
            if not request.htmx:
                return redirect("volume_job", job_id=job.pk)
    context = {"form": form, "presets": PRESETS, **(_job_context(job) if job else {})}
    return render(request, "volumes/create.html#area" if request.htmx else "volumes/create.html", context)


@require_http_methods(["GET", "POST"])
def volume_remove(request, name: str):
    volume = scoping.require_on(request, roles.MANAGE_VOLUMES, selectors.volume_detail(name=name),
                                object_type="volume", object_name=name, missing=f"No volume named {name!r} is known.")
    form, job = VolumeRemoveForm(volume=volume), None
    if request.method == "POST":
        form = VolumeRemoveForm(request.POST, volume=volume)
        if form.is_valid():
            try:
                job = services.volume_remove_start(volume=volume, user=request.user)
            except Refused as exc:
                form.add_error(None, str(exc))
            else:
                if not request.htmx:
                    return redirect("volume_job", job_id=job.pk)
    context = {"volume": volume, "users": selectors.volume_users(volume=volume), "form": form,
               **(_job_context(job) if job else {})}
    return render(request, "volumes/remove.html#area" if request.htmx else "volumes/remove.html", context)


@require_http_methods(["GET", "POST"])
def volume_prune(request):
    scoping.require_global(request, roles.MANAGE_VOLUMES, object_type="volume", object_name="(prune)")
    include_named = request.GET.get("all") == "1"
    host = host_param(request.POST if request.method == "POST" else request.GET) or refs.default_host_name()
    form, job = None, None
    if request.method == "POST":
        form = PruneConfirmForm(request.POST)
        include_named = request.POST.get("include_named") == "on"
        if form.is_valid():
            job = services.volume_prune_start(
                names=form.cleaned_data["names"], include_named=include_named, user=request.user
            )
            if not request.htmx:
                return redirect("volume_job", job_id=job.pk)
    context = {"preview": selectors.prune_preview(include_named=include_named, host=host), "form": form,
               **(_job_context(job) if job else {})}
    return render(request, "volumes/prune.html#area" if request.htmx else "volumes/prune.html", context)


@require_GET
def volume_job(request, job_id: int):
    """Follows a lifecycle job; with htmx, answers its polls and shows the outcome at once."""
    job = _get_lifecycle_job(request, job_id)
    if request.htmx and job.status == Job.Status.SUCCEEDED and job.kind == services.KIND_CREATE:
        return HttpResponseClientRedirect(reverse("volume_detail", args=[job.result.get("name", "")]))
    if request.htmx and job.status == Job.Status.SUCCEEDED and job.kind == services.KIND_REMOVE:
        messages.success(request, job.result.get("message", "Removed."))
        return HttpResponseClientRedirect(reverse("volume_list"))
    if request.htmx:
        return poll_response(request, "volumes/job.html#outcome", _job_context(job), active=job.is_active)
    return render(request, "volumes/job.html", _job_context(job))
