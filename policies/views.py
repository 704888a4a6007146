from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles, scoping
from hosts.selectors import host_param
from policies import cron, notify, selection, selectors, services
from policies.forms import NotificationSettingsForm, PolicyForm, selection_from
from policies.models import BackupPolicy, PolicyRun
from project.errors import CargoholdError


def _get_policy_for_user(request, policy_id: int, perm: str = roles.VIEW_INVENTORY) -> BackupPolicy:
    """403 (audited) when the role may not do `perm`; 404 when there is no such policy or it
    is not wholly the user's teams' (accounts.scoping)."""
    return scoping.require_on(request, perm, selectors.policy_get(policy_id=policy_id), object_type="policy",
                              object_name=str(policy_id), missing="No such policy.")


def _selection_refusal(request, form) -> bool:
    """A team's Admin saves only policies whose volumes are all their teams' (the form says so)."""
    if scoping.can(request.user, roles.MANAGE_POLICIES, form.instance):
        return False
    form.add_error(None, "This selection takes in volumes that are not your teams' (or none yet): "
                         "choose volumes your teams own.")
    return True


def _team_volumes(request):
    """What the form picks and previews from: every volume for a global role, else the teams'."""
    return None if scoping.can_globally(request.user, roles.MANAGE_POLICIES) else \
        scoping.visible_volumes(request.user, roles.MANAGE_POLICIES)


@require_GET
def policy_list(request):
    scoping.require_anywhere(request, roles.VIEW_INVENTORY)
    host = host_param(request.GET)
    return render(request, "policies/list.html", {"rows": selectors.policy_rows(who=request, host=host), "host": host})


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


def _form_page(request, form: PolicyForm, policy: BackupPolicy | None):
    """The form with its preview filled in for what it shows (a bad selection: its error once, by the field)."""
    preview = None
    if not form.is_bound or "selector_value" not in form.errors:
        try:
            preview = selection.selection_preview(selection_from(
                form["selector_kind"].value() or "", form["selector_value"].value() or "", form["pick"].value() or []),
                within=_team_volumes(request))
        except selection.SelectionError:
            preview = None
    context = {"form": form, "policy": policy, "preview": preview, "timezones": cron.timezones()}
    return render(request, "policies/form.html", context)


@require_GET
def policy_preview(request):
    """The policy form's live preview (htmx): which volumes the selection matches now."""
    scoping.require_anywhere(request, roles.MANAGE_POLICIES, object_type="policy", object_name="(preview)")
    context = {"preview": None, "preview_error": ""}
    try:
        sel = selection_from(request.GET.get("selector_kind", ""), request.GET.get("selector_value", "")[:20_000],
                             request.GET.getlist("pick")[:5000])
    except selection.SelectionError as exc:
        context["preview_error"] = str(exc)
    else:
        context["preview"] = selection.selection_preview(sel, within=_team_volumes(request))
    return render(request, "policies/form.html#preview", context)


def _initial_from_query(request) -> dict:
    """"Add to a policy" from the risks page: /policies/new/?volume=NAME starts with that volume."""
    names = [n[:255] for n in request.GET.getlist("volume")][:100]
    return {"selector_kind": selection.NAMES, "pick": names} if names else {}


@require_http_methods(["GET", "POST"])
def policy_create(request):
    scoping.require_anywhere(request, roles.MANAGE_POLICIES, object_type="policy", object_name="(new policy)")
    form = PolicyForm(request.POST or None, volumes=_team_volumes(request), initial={"cron": "0 2 * * *", "keep_daily": 7, "keep_weekly": 4,
                                                     "keep_monthly": 6, "timezone": "UTC",
                                                     **_initial_from_query(request)})
    if request.method == "POST" and form.is_valid() and not _selection_refusal(request, form):
        try:
            policy = services.policy_save(policy=form.save(commit=False), user=request.user, request=request)
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Policy {policy.name} saved.")
            return redirect("policy_detail", policy_id=policy.pk)
    return _form_page(request, form, None)


@require_http_methods(["GET", "POST"])
def policy_edit(request, policy_id: int):
    policy = _get_policy_for_user(request, policy_id, roles.MANAGE_POLICIES)
    form = PolicyForm(request.POST or None, instance=policy, volumes=_team_volumes(request))
    if request.method == "POST" and form.is_valid() and not _selection_refusal(request, form):
        try:
            services.policy_save(policy=form.save(commit=False), user=request.user, request=request)
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Policy {policy.name} saved.")
            return redirect("policy_detail", policy_id=policy.pk)
    return _form_page(request, form, policy)


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
    scoping.require_global(request, roles.MANAGE_POLICIES, object_type="notifications", object_name="settings")
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
    scoping.require_global(request, roles.MANAGE_POLICIES, object_type="notifications", object_name="test")
    try:
        notify.notification_send_test(user=request.user, request=request)
    except CargoholdError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Test notification queued: its delivery shows below.")
    return redirect("notification_settings")
