"""Copy or move a volume to another host: the form on the volume's page, and the
transfer's own page, which follows its steps' jobs (hosts.transfers)."""

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts import roles, scoping
from backups.services import stops_by_default
from hosts import transfers
from hosts.forms_transfers import TransferForm
from hosts.selectors import host_param
from jobs import kinds
from jobs.polling import poll_response
from project.errors import CargoholdError
from volumes import selectors as volume_selectors


@require_http_methods(["GET", "POST"])
def volume_transfer(request, name: str):
    """The form: 404 for a volume the user cannot see, 403 without the right to back it up
    and restore it (copy), or to remove it (move); the service checks the rest."""
    volume = scoping.require_on(request, roles.RUN_BACKUP, volume_selectors.volume_detail(name=name),
                                object_type="volume", object_name=name, missing=f"No volume named {name!r} is known.")
    scoping.require_on(request, roles.RESTORE_NEW, volume, object_type="volume", object_name=name)
    from repositories.models import Repository

    form = TransferForm(request.POST or None, hosts=transfers.transfer_targets(volume=volume),
                        repositories=Repository.objects.order_by("-is_default", "name"),
                        initial={"target_name": volume.engine_name,
                                 "stop_containers": stops_by_default(volume)})
    if request.method == "POST" and request.POST.get("remove_source"):
        scoping.require_on(request, roles.MANAGE_VOLUMES, volume, object_type="volume", object_name=name)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            transfer = transfers.transfer_start(
                volume=volume, target_host=data["target_host"], target_name=data["target_name"],
                repository=data["repository"] or None, remove_source=data["remove_source"],
                stop_containers=data["stop_containers"], user=request.user, request=request)
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("transfer_detail", transfer_id=transfer.pk)
    context = {"volume": volume, "form": form, "users": volume_selectors.volume_users(volume=volume),
               "may_remove": scoping.can(request.user, roles.MANAGE_VOLUMES, volume)}
    return render(request, "hosts/transfer_new.html", context, status=400 if request.method == "POST" else 200)


@require_GET
def transfer_detail(request, transfer_id: int):
    """The transfer's page; with htmx its polled status (stops once the transfer ended)."""
    transfer = transfers.transfer_detail(transfer_id=transfer_id)
    scoping.require_on(request, roles.VIEW_INVENTORY, transfer.source_ref if transfer else None,
                       object_type="transfer", object_name=str(transfer_id), missing="No such transfer.")
    progress = transfer.progress()
    steps = []
    for label, job in (("1. Back up the source", transfer.backup.job if transfer.backup_id else None),
                       ("2. Restore on " + transfer.target_host, transfer.restore.job if transfer.restore_id else None),
                       ("3. Remove the source", transfer.removal_job)):
        if label.startswith("3") and not transfer.remove_source:
            continue
        steps.append({"label": label, "job": job, "kind": kinds.get(job.kind) if job else None})
    active = progress.is_active or any(s["job"] is not None and s["job"].is_active for s in steps)
    context = {"transfer": transfer, "progress": progress, "steps": steps, "poll_active": active}
    if request.htmx:
        return poll_response(request, "hosts/transfer_detail.html#status", context, active=active)
    return render(request, "hosts/transfer_detail.html", context)


@require_GET
def transfer_list(request):
    """Every transfer the user may see, newest first, filtered by host (from or to it)."""
    scoping.require_anywhere(request, roles.VIEW_INVENTORY, object_type="transfer", object_name="(list)")
    host = host_param(request.GET)
    volume = request.GET.get("volume", "").strip()[:320]
    page = transfers.transfer_page(page=request.GET.get("page"), host=host, volume=volume, who=request)
    rows = [(t, t.progress()) for t in page]
    context = {"page": page, "rows": rows, "host": host, "volume": volume,
               "any_active": any(progress.is_active for _, progress in rows)}  # sets the poll's pace
    return render(request, "hosts/transfer_list.html#table" if request.htmx else "hosts/transfer_list.html", context)
