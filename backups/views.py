from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles, scoping
from accounts.services import audit_record
from backups import selectors, services
from backups.forms import BackupForm, BulkBackupForm
from backups.models import Backup
from backups.storage import StorageError, backup_storage
from jobs import kinds
from jobs.polling import job_latest, poll_response
from project.errors import CargoholdError
from volumes import selectors as volume_selectors

DELETE_PERM = roles.MANAGE_POLICIES  # removing backups is retention's business: Admins
BULK_LIMIT = 500


def _get_backup_for_user(request, backup_id: int, perm: str = roles.VIEW_INVENTORY) -> Backup:
    """403 (audited) when the role may not do `perm`; 404 when there is no such backup or it
    is another team's (accounts.scoping)."""
    return scoping.require_on(request, perm, selectors.backup_detail(backup_id=backup_id), object_type="backup",
                              object_name=str(backup_id), missing="No such backup.")


@require_GET
def backup_list(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    filters = selectors.BackupFilters.from_query(request.GET)
    active, active_count = selectors.backups_active(who=request)
    context = {
        "page": selectors.backup_page(filters=filters, page=request.GET.get("page"), who=request),
        "filters": filters,
        "statuses": Backup.Status.values,
        "volume_names": selectors.backup_volume_names(who=request, limit=selectors.VOLUME_CHOICES_MAX + 1),
        "volume_choices_max": selectors.VOLUME_CHOICES_MAX,
        "active": active,
        "active_count": active_count,
        "kind": kinds.get(services.KIND_BACKUP),
    }
    template = "backups/list.html#table" if request.htmx else "backups/list.html"
    return render(request, template, context)


@require_GET
def backup_detail(request, backup_id: int):
    backup = _get_backup_for_user(request, backup_id)
    follow_up = job_latest(kinds=[services.KIND_VERIFY], backup=backup.pk)  # Verify's job, shown here
    if follow_up is not None and not follow_up.is_active:
        # Read the row again after its job: a verify that ended between the two reads
        # would otherwise be shown ended beside the old verified time, in the last poll.
        backup.refresh_from_db()
    active = backup.is_active or bool(follow_up and follow_up.is_active)
    context = {"backup": backup, "job": backup.job, "kind": kinds.get(services.KIND_BACKUP), "follow_up": follow_up,
               "follow_up_kind": follow_up and kinds.get(follow_up.kind), "poll_active": active}
    if request.htmx:
        return poll_response(request, "backups/detail.html#status", context, active=active)
    return render(request, "backups/detail.html", context)


@require_http_methods(["GET", "POST"])
def volume_backup(request, name: str):
    """"Back up now" for one volume: the options form (GET) and starting it (POST)."""
    volume = scoping.require_on(request, roles.RUN_BACKUP, volume_selectors.volume_detail(name=name),
                                object_type="volume", object_name=name, missing=f"No volume named {name!r} is known.")
    form = BackupForm(request.POST or None, initial={"stop_containers": services.stops_by_default(volume)})
    if request.method == "POST" and form.is_valid():
        try:
            backup = services.backup_start(
                volume_name=volume.name, user=request.user, request=request,
                stop_containers=form.cleaned_data["stop_containers"], compression=form.cleaned_data["compression"],
                repository=form.cleaned_data["repository"],
            )
        except CargoholdError as exc:
            messages.error(request, str(exc))
            return redirect("volume_detail", name=volume.name)
        return redirect("backup_detail", backup_id=backup.pk)
    running = selectors.running_users_of(volume=volume)
    context = {"volume": volume, "form": form, "running": running,
               "always_stopped": [c for c in running if services.stop_label_set(c.labels)]}
    return render(request, "backups/start.html", context, status=400 if request.method == "POST" else 200)


@require_http_methods(["GET", "POST"])
def backup_bulk(request):
    """Back up several volumes at once: those selected on the list, or a Compose project's."""
    scoping.require_anywhere(request, roles.RUN_BACKUP, object_type="volume", object_name="(several)")
    data = request.POST if request.method == "POST" else request.GET
    project = data.get("project", "").strip()[:255]
    names = [n[:255] for n in data.getlist("volume")][: BULK_LIMIT + 1]
    if project:
        volumes, unknown = selectors.volumes_by_name(
            names=[v.name for v in volume_selectors.compose_project_volumes(project=project)], who=request)
        unknown = []  # (another team's volumes of the project are left out, unnamed)
    else:
        volumes, unknown = selectors.volumes_by_name(names=names, who=request)
    problems = []
    if unknown:
        problems.append("Unknown or removed volumes: " + ", ".join(unknown[:20]) + ("…" if len(unknown) > 20 else ""))
    if len(volumes) > BULK_LIMIT:
        problems.append(f"At most {BULK_LIMIT} volumes at a time.")
    if not volumes and not problems:
        problems.append(f"The Compose project {project!r} has no volumes." if project else "Select at least one volume.")
    form = BulkBackupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and not problems:
        started, refused = services.backups_start_many(
            volume_names=[v.name for v in volumes], user=request.user,
            stop_containers=form.stop_value(), compression=form.cleaned_data["compression"],
            repository=form.cleaned_data["repository"],
        )
        if started:
            messages.success(request, f"Queued {len(started)} backup{'s' if len(started) != 1 else ''}.")
        for message in refused:
            messages.error(request, message)
        return redirect("backup_list")
    context = {"volumes": volumes, "project": project, "problems": problems, "form": form}
    status = 400 if problems or (request.method == "POST") else 200
    return render(request, "backups/bulk.html", context, status=status)


@require_GET
def backup_download(request, backup_id: int):
    backup = _get_backup_for_user(request, backup_id, roles.DOWNLOAD_ARCHIVE)
    return download_response(request, backup)


def download_response(request, backup: Backup) -> FileResponse:
    """The archive, streamed from storage, audited (this page and the API's download)."""
    if not backup.is_restorable:
        raise Http404("This backup has no archive to download.")
    try:
        stream = backup_storage(backup).open_reader(backup.key)
    except StorageError as exc:
        audit_record(action="backup_download", request=request, object_type="backup", object_name=str(backup.pk),
                     params={"volume": backup.volume_name}, result="error", error=str(exc))
        raise Http404(str(exc)) from None
    audit_record(action="backup_download", request=request, object_type="backup", object_name=str(backup.pk),
                 params={"volume": backup.volume_name, "sha256": backup.sha256, "size_bytes": backup.size_bytes})
    response = FileResponse(stream, as_attachment=True, filename=backup.file_name)
    response["Content-Type"] = "application/zstd" if backup.compression == "zstd" else "application/gzip"
    response["X-Checksum-SHA256"] = backup.sha256
    return response


@require_POST
def backup_verify(request, backup_id: int):
    backup = _get_backup_for_user(request, backup_id, roles.RUN_BACKUP)
    try:
        services.backup_verify_start(backup=backup, user=request.user)
        messages.info(request, "Verification queued: the archive is re-read and checked.")
    except CargoholdError as exc:
        messages.error(request, str(exc))
    return redirect("backup_detail", backup_id=backup.pk)


@require_http_methods(["GET", "POST"])
def backup_delete(request, backup_id: int):
    backup = _get_backup_for_user(request, backup_id, DELETE_PERM)
    if request.method == "POST":
        if request.POST.get("confirm") != str(backup.pk):
            messages.error(request, "Tick the confirmation to delete this backup.")
            return render(request, "backups/delete.html", {"backup": backup}, status=400)
        try:
            job = services.backup_delete_start(backup=backup, user=request.user)
        except CargoholdError as exc:
            messages.error(request, str(exc))
            return redirect("backup_detail", backup_id=backup.pk)
        # The worker deletes it (the web process may have the backup folder read-only).
        messages.info(request, f"Deleting backup #{backup_id} of {backup.volume_name}.")
        return redirect("job_detail", job_id=job.pk)
    return render(request, "backups/delete.html", {"backup": backup})
