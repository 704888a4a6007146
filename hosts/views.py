"""The Hosts page: every signed-in user sees which hosts are online; Admins of the whole
installation register them and see how their workers connect."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from accounts import roles, scoping
from hosts import selectors
from hosts.forms import HostForm
from hosts.models import Host
from hosts.services import host_remove, host_remove_refusal, host_save
from project.errors import Refused

PERM = roles.MANAGE_POLICIES  # with require_global: Admins of the whole installation


@require_GET
def host_list(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY, object_type="host", object_name="(list)")
    return render(request, "hosts/list.html", {
        "hosts": selectors.hosts_with_counts(),
        "can_manage": scoping.can_globally(request.user, PERM),
    })


@never_cache
@require_http_methods(["GET", "POST"])
def host_edit(request, name: str | None = None):
    scoping.require_global(request, PERM, object_type="host", object_name=name or "(new)")
    host = get_object_or_404(Host, name=name) if name else None
    form = HostForm(request.POST or None, instance=host)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            saved, created = host_save(
                name=host.name if host else data["name"], url=data["url"], ca_pem=data["tls_ca_cert"],
                cert_pem=data["tls_client_cert"], key_pem=data["tls_client_key"] or None,
                description=data["description"], actor=request.user, request=request)
        except Refused as exc:
            form.add_error(None, str(exc))
        else:
            if created or host is None:
                messages.success(request, f"Registered the host {saved.name}. Start its worker beside the engine: "
                                          f"python manage.py host_worker --host {saved.name}")
            else:
                messages.success(request, f"Saved the host {saved.name}.")
            return redirect("host_list")
    status = 400 if request.method == "POST" else 200
    return render(request, "hosts/form.html", {"form": form, "host": host}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def host_remove_view(request, name: str):
    """Forget a host (its worker stopped): a confirmation page that says what goes and what stays."""
    scoping.require_global(request, PERM, object_type="host", object_name=name)
    host = get_object_or_404(Host, name=name)
    refusal = host_remove_refusal(host)
    if request.method == "POST":
        if request.POST.get("confirm") != host.name:
            refusal = refusal or "Tick the box to confirm the removal."
        else:
            try:
                counts = host_remove(name=host.name, actor=request.user, request=request)
            except Refused as exc:
                refusal = str(exc)
            else:
                messages.success(request, f"Removed the host {name} and its mirror ({counts['volumes']} volumes, "
                                          f"{counts['containers']} containers); its backups stay.")
                return redirect("host_list")
    counts = selectors.host_counts(host)
    status = 400 if request.method == "POST" else 200
    return render(request, "hosts/remove.html", {"host": host, "refusal": refusal, **counts}, status=status)
