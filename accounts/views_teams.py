"""Teams' pages (global Admins) and the navigation's team switcher (anyone with teams)."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles, scoping, teams
from accounts.models import Team, TeamMembership, TeamRule


def _require_admin(request, name: str = "teams"):
    scoping.require_global(request, roles.MANAGE_USERS, object_type="team", object_name=name)


@require_http_methods(["GET", "POST"])
def team_list(request):
    _require_admin(request)
    if request.method == "POST":
        try:
            team = teams.team_create(name=request.POST.get("name", ""), description=request.POST.get("description", ""),
                                     request=request)
        except teams.TeamError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Team {team.name} created: add its rules and members.")
            return redirect("team_detail", team_id=team.pk)
    rows = [(t, scoping.team_volumes(t).present().count()) for t in Team.objects.prefetch_related("memberships")]
    from volumes.models import Volume

    unowned = sorted(scoping.unowned_names(Volume.objects.present().values_list("name", flat=True)))
    return render(request, "accounts/teams.html", {"rows": rows, "unowned": unowned})


@require_http_methods(["GET", "POST"])
def team_detail(request, team_id: int):
    team = get_object_or_404(Team, pk=team_id)
    _require_admin(request, team.name)
    if request.method == "POST":
        _team_change(request, team)
        return redirect("team_detail", team_id=team.pk)
    rules = [(rule, scoping.team_volumes_of_rule(rule).count()) for rule in team.rules.all()]
    context = {
        "team": team, "rules": rules, "kinds": TeamRule.Kind.choices, "role_choices": TeamMembership.Role.values,
        "members": team.memberships.select_related("user").order_by("user__username"),
        "volumes": scoping.team_volumes(team).present().order_by("name")[:200],
        "volume_count": scoping.team_volumes(team).present().count(),
        "users": get_user_model().objects.filter(is_active=True).order_by("username").values_list("username", flat=True),
    }
    return render(request, "accounts/team_detail.html", context)


def _team_change(request, team: Team) -> None:
    """One of the page's forms: add or remove a rule or a member, change a role, delete."""
    action = request.POST.get("action", "")
    try:
        if action == "rule_add":
            rule = teams.rule_add(team=team, kind=request.POST.get("kind", ""), value=request.POST.get("value", ""),
                                  request=request)
            messages.success(request, f"Rule added: {rule.get_kind_display()} {rule.value}.")
        elif action == "rule_remove":
            teams.rule_remove(rule=get_object_or_404(TeamRule, pk=request.POST.get("rule") or 0, team=team),
                              request=request)
            messages.success(request, "Rule removed.")
        elif action == "member_set":
            m = teams.member_set(team=team, username=request.POST.get("username", ""),
                                 role=request.POST.get("role", ""), request=request)
            messages.success(request, f"{m.user.get_username()} is {m.role} of {team.name}.")
        elif action == "member_remove":
            teams.member_remove(membership=get_object_or_404(TeamMembership, pk=request.POST.get("membership") or 0,
                                                             team=team), request=request)
            messages.success(request, "Member removed.")
        else:
            messages.error(request, "Choose what to change.")
    except teams.TeamError as exc:
        messages.error(request, str(exc))


@require_POST
def team_delete(request, team_id: int):
    team = get_object_or_404(Team, pk=team_id)
    _require_admin(request, team.name)
    if request.POST.get("confirm") != team.name:
        messages.error(request, "Type the team's name to delete it.")
        return redirect("team_detail", team_id=team.pk)
    teams.team_delete(team=team, request=request)
    messages.success(request, f"Team {team.name} deleted: its volumes are no team's until another rule matches them.")
    return redirect("team_list")


@require_GET
def team_rule_preview(request):
    """The rule form's live preview (htmx): "this rule matches these N volumes"."""
    _require_admin(request, "(rule preview)")
    context = {"count": None, "names": [], "error": ""}
    try:
        context["count"], context["names"] = teams.rule_preview(kind=request.GET.get("kind", ""),
                                                                value=request.GET.get("value", "")[:500])
    except teams.TeamError as exc:
        context["error"] = str(exc)
    return render(request, "accounts/team_detail.html#preview", context)


@require_POST
def team_switch(request):
    """The switcher: lists, counts and the overview narrow to one of the user's teams."""
    choice = request.POST.get("team", "")
    allowed = {str(t.pk): t for t in scoping.switcher_teams(request.user)}
    if choice and choice not in allowed:
        messages.error(request, "Choose one of your teams.")
    elif choice:
        request.session[scoping.SESSION_KEY] = int(choice)
    else:
        request.session.pop(scoping.SESSION_KEY, None)
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        return redirect(next_url)
    return redirect("home")
