from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from accounts.permissions import require
from policies import notify, selectors, services
from policies.forms import NotificationSettingsForm, PolicyForm
from policies.models import BackupPolicy, PolicyRun
from project.errors import CargoholdError


def _get_policy_for_user(request, policy_id: int, perm: str = roles.VIEW_INVENTORY) -> BackupPolicy:
    """403 (audited) when the role may not do `perm`; 404 when there is no such policy."""
    require(request, perm, object_type="policy", object_name=str(policy_id))
    policy = selectors.policy_get(policy_id=policy_id)
    if policy is None:
        raise Http404("No such policy.")
    return policy


@require_GET
def policy_list(request):
    require(request, roles.VIEW_INVENTORY)
    return render(request, "policies/list.html", {"rows": selectors.policy_rows()})


@require_GET
def policy_detail(request, policy_id: int):
    policy = _get_policy_for_user(request, policy_id)
    runs = selectors.policy_runs(policy=policy)
    context = {"policy": policy, "runs": runs, "any_active": any(r.is_active for r in runs)}
    if request.htmx:
        return render(request, "policies/detail.html#runs", context)
    context.update(
        next_runs=selectors.policy_next_runs(policy=policy),
        volumes=selectors.policy_volumes(policy=policy),
        previews=selectors.retention_preview(policy=policy),
    )
    return render(request, "policies/detail.html", context)


@require_http_methods(["GET", "POST"])
def policy_create(request):
    require(request, roles.MANAGE_POLICIES, object_type="policy", object_name="(new policy)")
    form = PolicyForm(request.POST or None, initial={"cron": "0 2 * * *", "keep_daily": 7, "keep_weekly": 4,
                                                     "keep_monthly": 6, "timezone": "UTC"})
    if request.method == "POST" and form.is_valid():
        try:
            policy = services.policy_save(policy=form.save(commit=False), user=request.user, request=request)
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Policy {policy.name} saved.")
            return redirect("policy_detail", policy_id=policy.pk)
    return render(request, "policies/form.html", {"form": form, "policy": None})


@require_http_methods(["GET", "POST"])
def policy_edit(request, policy_id: int):
    policy = _get_policy_for_user(request, policy_id, roles.MANAGE_POLICIES)
    form = PolicyForm(request.POST or None, instance=policy)
    if request.method == "POST" and form.is_valid():
        try:
            services.policy_save(policy=form.save(commit=False), user=request.user, request=request)
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Policy {policy.name} saved.")
            return redirect("policy_detail", policy_id=policy.pk)
    return render(request, "policies/form.html", {"form": form, "policy": policy})


@require_POST
def policy_run_now(request, policy_id: int):
    policy = _get_policy_for_user(request, policy_id, roles.MANAGE_POLICIES)
    runs = services.policy_run_now(policy=policy, user=request.user, request=request)
    started = sum(1 for r in runs if r.status in PolicyRun.ACTIVE)
    messages.success(request, f"Run started: {started} backup{'s' if started != 1 else ''} queued"
                              f"{f', {len(runs) - started} not started (see below)' if len(runs) != started else ''}.")
    return redirect("policy_detail", policy_id=policy.pk)


@require_POST
def policy_enable(request, policy_id: int):
    policy = _get_policy_for_user(request, policy_id, roles.MANAGE_POLICIES)
    enabled = request.POST.get("enabled") == "1"
    try:
        services.policy_set_enabled(policy=policy, enabled=enabled, user=request.user, request=request)
    except CargoholdError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Policy {policy.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("policy_detail", policy_id=policy.pk)


@require_http_methods(["GET", "POST"])
def policy_delete(request, policy_id: int):
    policy = _get_policy_for_user(request, policy_id, roles.MANAGE_POLICIES)
    if request.method == "POST":
        if request.POST.get("confirm") != policy.name:
            messages.error(request, "Type the policy's name to confirm.")
        else:
            services.policy_delete(policy=policy, user=request.user, request=request)
            messages.success(request, f"Policy {policy.name} deleted. Its backups are kept.")
            return redirect("policy_list")
    return render(request, "policies/delete.html", {"policy": policy})


@require_http_methods(["GET", "POST"])
def notification_settings(request):
    require(request, roles.MANAGE_POLICIES, object_type="notifications", object_name="settings")
    config = selectors.notification_settings()
    deliveries = selectors.recent_deliveries()
    context = {"deliveries": deliveries, "any_pending": any(d.status == "pending" for d in deliveries)}
    if request.htmx and request.method == "GET":
        return render(request, "policies/notifications.html#deliveries", context)
    form = NotificationSettingsForm(request.POST or None, instance=config)
    if request.method == "POST" and form.is_valid():
        notify.notification_settings_save(config=form.save(commit=False), user=request.user, request=request)
        messages.success(request, "Notification settings saved.")
        return redirect("notification_settings")
    return render(request, "policies/notifications.html", {"form": form, **context})


@require_POST
def notification_test(request):
    require(request, roles.MANAGE_POLICIES, object_type="notifications", object_name="test")
    try:
        notify.notification_send_test(user=request.user, request=request)
    except CargoholdError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Test notification queued: its delivery shows below.")
    return redirect("notification_settings")
