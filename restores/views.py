from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from project.sizes import human_size
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles, scoping
from hosts.selectors import host_param
from backups import imports
from backups import selectors as backup_selectors
from backups.models import Backup
from jobs import kinds
from jobs.polling import job_latest, poll_response
from project.errors import CargoholdError
from restores import selectors, services
from restores.forms import ImportForm, RestoreInPlaceForm, RestoreNewForm
from restores.models import Restore
from restores.uploads import StagingUploadHandler


def _get_backup_for_user(request, backup_id: int, perm: str) -> Backup:
    """403 (audited) when the role may not do `perm`; 404 when there is no such backup or it
    is another team's (accounts.scoping)."""
    return scoping.require_on(request, perm, backup_selectors.backup_detail(backup_id=backup_id),
                              object_type="backup", object_name=str(backup_id), missing="No such backup.")


def _get_restore_for_user(request, restore_id: int, perm: str = roles.VIEW_INVENTORY) -> Restore:
    return scoping.require_on(request, perm, selectors.restore_detail(restore_id=restore_id),
                              object_type="restore", object_name=str(restore_id), missing="No such restore.")


@require_http_methods(["GET", "POST"])
def restore_new(request, backup_id: int):
    """Restore a backup into a new volume: the form (settings from the manifest, driver and
    options only for those who may create volumes) and start."""
    backup = _get_backup_for_user(request, backup_id, roles.RESTORE_NEW)
    manifest = services.restore_defaults(backup=backup, user=request.user)
    form = RestoreNewForm(request.POST or None, manifest=manifest, backup=backup,
                          selected=request.GET.getlist("paths"),
                          initial={"name": services.suggested_name(backup), "driver": manifest["driver"]})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            restore = services.restore_new_start(
                backup=backup, volume_name=data["ref"], driver=data["driver"] or None, options=data["options"],
                labels=data["labels"], allow_devices=data["allow_devices"], paths=data["paths"], user=request.user,
            )
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("restore_detail", restore_id=restore.pk)
    context = {"backup": backup, "form": form, "manifest": manifest}
    return render(request, "restores/new.html", context,
                  status=400 if request.method == "POST" or form.paths_problem else 200)


@require_http_methods(["GET", "POST"])
def restore_in_place(request, backup_id: int):
    """Restore a backup over its own volume (Admins), confirmed by typing the volume's name."""
    backup = _get_backup_for_user(request, backup_id, roles.RESTORE_IN_PLACE)
    form = RestoreInPlaceForm(request.POST or None, backup=backup, volume_name=backup.volume_name,
                              may_choose=services.may_choose_volume_settings(request.user),
                              imported=backup.origin == Backup.Origin.IMPORTED, selected=request.GET.getlist("paths"))
    if request.method == "POST" and form.is_valid():
        try:
            restore = services.restore_in_place_start(
                backup=backup, confirm_name=form.cleaned_data["confirm_name"],
                allow_devices=form.cleaned_data["allow_devices"],
                confirm_imported=form.cleaned_data["confirm_imported"], paths=form.cleaned_data["paths"],
                user=request.user,
            )
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("restore_detail", restore_id=restore.pk)
    context = {"backup": backup, "form": form, "volume": backup.volume if backup.volume_id else None,
               "running": selectors.running_users(volume_name=backup.volume_name)}
    return render(request, "restores/in_place.html", context,
                  status=400 if request.method == "POST" or form.paths_problem else 200)


@require_GET
def restore_list(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    host = host_param(request.GET)
    page = selectors.restore_page(page=request.GET.get("page"), volume=request.GET.get("volume", "")[:320],
                                  host=host, who=request)
    return render(request, "restores/list.html", {"page": page, "host": host})


@require_GET
def restore_detail(request, restore_id: int):
    """A restore's page; with htmx, its polled status (polling stops once all is settled)."""
    restore = _get_restore_for_user(request, restore_id)
    # The buttons' follow-up jobs are shown and followed here, on the restore's page.
    follow_up = job_latest(kinds=[services.KIND_ROLLBACK, services.KIND_REMOVE_PARTIAL], restore=restore.pk)
    if follow_up is not None and not follow_up.is_active:
        restore.refresh_from_db()  # after its job (see backups.views.backup_detail)
    active = restore.is_active or bool(restore.job and restore.job.is_active) or bool(follow_up and follow_up.is_active)
    context = {"restore": restore, "job": restore.job, "kind": kinds.get(restore.job.kind) if restore.job else None,
               "follow_up": follow_up, "follow_up_kind": follow_up and kinds.get(follow_up.kind), "poll_active": active}
    if request.htmx:
        return poll_response(request, "restores/detail.html#status", context, active=active)
    return render(request, "restores/detail.html", context)


def _follow_up_start(request, restore_id: int, perm: str, start, doing: str):
    """A button of the restore's page: start its job (`start`), say so, back to the page."""
    restore = _get_restore_for_user(request, restore_id, perm)
    try:
        job = start(restore=restore, user=request.user)
        messages.info(request, f"{doing.format(volume=restore.volume_name)} (job #{job.pk}).")
    except CargoholdError as exc:
        messages.error(request, str(exc))
    return redirect("restore_detail", restore_id=restore.pk)


@require_POST
def restore_remove_partial(request, restore_id: int):
    return _follow_up_start(request, restore_id, roles.RESTORE_NEW, services.partial_volume_remove_start,
                            "Removing the partial volume {volume}")


@require_POST
def restore_roll_back(request, restore_id: int):
    return _follow_up_start(request, restore_id, roles.RESTORE_IN_PLACE, services.restore_rollback_start,
                            "Putting the previous content of {volume} back")


@require_POST
def restore_dismiss(request, restore_id: int):
    restore = _get_restore_for_user(request, restore_id, roles.RESTORE_IN_PLACE)
    if request.POST.get("confirm_name") != restore.volume_name:
        messages.error(request, "Type the volume's name to confirm: nothing was changed.")
        return redirect("restore_detail", restore_id=restore.pk)
    try:
        services.restore_dismiss(restore=restore, user=request.user, request=request)
        messages.info(request, f"Dismissed; the containers of {restore.volume_name} are started again shortly.")
    except CargoholdError as exc:
        messages.error(request, str(exc))
    return redirect("restore_detail", restore_id=restore.pk)


# --- imports ---------------------------------------------------------------------------------


@csrf_exempt
@require_http_methods(["GET", "POST"])
def backup_import(request):
    """Upload an archive. The body streams to the staging folder as it arrives, so the
    upload handler is set before anything reads it; CSRF is checked right after (below)."""
    # An import names any volume (it would join that volume's team): a global role's (scoping).
    scoping.require_global(request, roles.DOWNLOAD_ARCHIVE, object_type="backup", object_name="(import)")
    limit = settings.UPLOAD_MAX_BYTES
    if request.method == "POST":
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if limit and length > limit + 1024 * 1024:
            # Refused before reading the body (multipart overhead allowed for).
            return _import_page(request, ImportForm(), status=413,
                                error=f"The upload is {human_size(length)}; at most {human_size(limit)} "
                                      "are accepted (UPLOAD_MAX_BYTES).")
        handler = StagingUploadHandler(request, limit=limit)
        request.upload_handlers = [handler]
        return _backup_import_post(request, handler)
    return _import_page(request, ImportForm())


@csrf_protect
def _backup_import_post(request, handler):
    uploads = [f for key in request.FILES for f in request.FILES.getlist(key)]
    archive = request.FILES.get("archive")
    try:
        form = ImportForm(request.POST)
        if handler.too_large:
            return _import_page(request, form, status=413,
                                error=f"The upload is larger than {human_size(settings.UPLOAD_MAX_BYTES)} "
                                      "(UPLOAD_MAX_BYTES): it was not kept.")
        if archive is None:
            return _import_page(request, form, status=400, error="Choose an archive file to upload.")
        if not form.is_valid():
            return _import_page(request, form, status=400)
        name = form.cleaned_data["volume_name"] or imports.import_volume_name(archive.name)
        staged = archive.staged_path.with_name(archive.staged_path.name.replace(".partial", ".staged"))
        archive.staged_path.rename(staged)
        archive.staged_path = staged
        try:
            gib = form.cleaned_data.get("max_expanded_gib")
            backup = imports.import_start(source=staged, volume_name=name, original_name=archive.name,
                                           user=request.user, max_expanded_bytes=gib * 1024**3 if gib else None)
        except CargoholdError as exc:
            return _import_page(request, form, status=400, error=str(exc))
        uploads.remove(archive)  # the worker imports it, then deletes it
        return redirect("import_detail", backup_id=backup.pk)
    finally:
        for f in uploads:
            getattr(f, "staged_path", None) and f.staged_path.unlink(missing_ok=True)


def _import_page(request, form, *, status: int = 200, error: str = ""):
    context = {"form": form, "error": error, "limit": settings.UPLOAD_MAX_BYTES}
    return render(request, "restores/import.html", context, status=status)


@require_GET
def import_detail(request, backup_id: int):
    """An import's progress, then the way on: restore the imported backup into a new volume."""
    backup = _get_backup_for_user(request, backup_id, roles.VIEW_INVENTORY)
    if backup.origin != Backup.Origin.IMPORTED or backup.job is None:
        return redirect("backup_detail", backup_id=backup.pk)
    job = backup.job
    context = {"backup": backup, "job": job, "kind": kinds.get(job.kind), "poll_active": job.is_active}
    if request.htmx:
        return poll_response(request, "restores/import_detail.html#status", context, active=job.is_active)
    return render(request, "restores/import_detail.html", context)
