"""The file browser of a backup (its file index), and downloads of one file or folder."""

from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from accounts import roles, scoping
from accounts.services import audit_record
from backups import downloads, extract, file_index
from backups import files_selectors as files
from backups.models import Backup, BackupEntry
from backups.views import _get_backup_for_user
from jobs import kinds
from jobs.models import Job
from jobs.polling import poll_response
from project.errors import CargoholdError


def _listing_context(request, backup: Backup) -> tuple[dict, int]:
    url = reverse("backup_files", args=[backup.pk])
    query = files.clean_query(request.GET.get("q"))
    try:
        path = files.clean_path(request.GET.get("path"))
    except files.BadPath as exc:
        return {"backup": backup, "problem": str(exc), "path": "", "query": query, "files_url": url}, 400
    listing = files.backup_listing(backup=backup, path=path, query=query, page=request.GET.get("page"))
    context = {
        "backup": backup, "listing": listing, "files_url": url, "path": path, "query": query,
        "crumbs": files.breadcrumbs(path),
        "can_download": scoping.can(request.user, roles.DOWNLOAD_ARCHIVE, backup) and backup.is_restorable,
        "can_restore": scoping.can(request.user, roles.RESTORE_NEW, backup) and backup.is_restorable,
        "can_restore_in_place": scoping.can(request.user, roles.RESTORE_IN_PLACE, backup) and bool(backup.volume_id),
        "restic": downloads.is_restic(backup),
    }
    return context, 404 if listing.missing else 200


@require_GET
def backup_files(request, backup_id: int):
    """/backups/<id>/files/?path=&q=&page=: a folder of the backup, or a search by name."""
    backup = _get_backup_for_user(request, backup_id)
    context, status = _listing_context(request, backup)
    template = "backups/files.html#listing" if request.htmx else "backups/files.html"
    return render(request, template, context, status=status)


def _entry_or_404(request, backup: Backup) -> BackupEntry:
    try:
        path = files.clean_path(request.GET.get("path") or request.POST.get("path"))
    except files.BadPath as exc:
        raise Http404(str(exc)) from None
    entry = file_index.index_entry(backup, path)
    if entry is None:
        raise Http404(f"{path or 'That path'} is not in this backup.")
    if not downloads.downloadable(entry):
        raise Http404(f"{path} is a {entry.get_kind_display()}: only files and folders download.")
    return entry


@require_GET
def backup_file_download(request, backup_id: int):
    """One file's bytes, or a folder as a tar (archive backups: streamed from storage)."""
    backup = _get_backup_for_user(request, backup_id, roles.DOWNLOAD_ARCHIVE)
    entry = _entry_or_404(request, backup)
    if downloads.is_restic(backup):
        raise Http404("This backup is a restic snapshot: prepare the download first (a worker reads it).")
    if not backup.is_restorable:
        raise Http404("This backup has no archive to download from.")
    return downloads.member_download_response(request, backup=backup, entry=entry)


@require_POST
def backup_extract(request, backup_id: int):
    """Restic backups: queue a worker to prepare the file or folder, then follow it."""
    backup = _get_backup_for_user(request, backup_id, roles.DOWNLOAD_ARCHIVE)
    entry = _entry_or_404(request, backup)
    try:
        job = extract.extract_start(backup=backup, entry=entry, user=request.user)
    except CargoholdError as exc:
        messages.error(request, str(exc))
        return redirect("backup_files", backup_id=backup.pk)
    return redirect("backup_extract_detail", backup_id=backup.pk, job_id=job.pk)


def _extract_job(request, backup_id: int, job_id: int) -> tuple[Backup, Job]:
    backup = _get_backup_for_user(request, backup_id, roles.DOWNLOAD_ARCHIVE)
    job = Job.objects.select_related("created_by").filter(pk=job_id, kind=extract.KIND_EXTRACT,
                                                          params__backup=backup.pk).first()
    if job is None:
        raise Http404("No such download for this backup.")
    return backup, job


@require_GET
def backup_extract_detail(request, backup_id: int, job_id: int):
    """The preparation's progress (polled), then its download link."""
    backup, job = _extract_job(request, backup_id, job_id)
    context = {"backup": backup, "job": job, "kind": kinds.get(job.kind), "ready": extract.extract_file(job),
               "poll_active": job.is_active}
    if request.htmx:
        return poll_response(request, "backups/extract.html#status", context, active=job.is_active)
    return render(request, "backups/extract.html", context)


@require_GET
def backup_extract_download(request, backup_id: int, job_id: int):
    backup, job = _extract_job(request, backup_id, job_id)
    path = extract.extract_file(job)
    if path is None:
        raise Http404("This download is not ready, or was removed (prepared files are kept for an hour).")
    entry = BackupEntry(name=job.params["path"].rsplit("/", 1)[-1], kind=job.params.get("kind", "f"))
    name, content_type = downloads.download_name(backup, entry)
    audit_record(action="backup_file_download", request=request, object_type="backup", object_name=str(backup.pk),
                 params={"volume": backup.volume_name, "path": job.params["path"], "kind": entry.kind,
                         "job": job.pk})
    response = FileResponse(open(path, "rb"), content_type=content_type)  # noqa: SIM115 (FileResponse closes it)
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response
