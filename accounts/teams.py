"""Teams: created, given rules and members by global Admins; every change audited.

Which volumes a team owns is what its rules match (accounts.ownership.rule_q), kept in
VolumeOwnership: a rule's creation or deletion refreshes the team's rows in the same
transaction (accounts.ownership's receivers), a team's deletion cascades.
"""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from accounts.models import Team, TeamMembership, TeamRule
from accounts.services import audit_record
from project.errors import CargoholdError


class TeamError(CargoholdError):
    pass


def _rule_check(kind: str, value: str) -> str:
    """The rule's value as stored, or TeamError saying what is wrong (policies' selection rules)."""
    from policies.selection import SelectionError, parse

    if kind not in TeamRule.Kind.values:
        raise TeamError(f"Unknown kind of rule {kind!r}: a label selector or a Compose project.")
    value = " ".join((value or "").split())[:500]
    try:
        parse(kind, value)
    except SelectionError as exc:
        raise TeamError(str(exc)) from None
    return value


def rule_preview(*, kind: str, value: str, limit: int = 50):
    """(matched volume count, the first names) for a rule being typed; TeamError when invalid."""
    from accounts.scoping import rule_q
    from volumes.models import Volume

    value = _rule_check(kind, value)
    matched = Volume.objects.present().filter(rule_q(kind, value)).order_by("name")
    return matched.count(), list(matched.values_list("name", flat=True)[:limit])


def team_create(*, name: str, description: str = "", request=None) -> Team:
    name = " ".join((name or "").split())
    if not name or len(name) > 100:
        raise TeamError("Give the team a name (at most 100 characters).")
    if Team.objects.filter(name__iexact=name).exists():
        raise TeamError(f"A team named {name} exists already.")
    team = Team.objects.create(name=name, description=(description or "").strip()[:300])
    audit_record(action="team_create", request=request, object_type="team", object_name=team.name)
    return team


def team_delete(*, team: Team, request=None) -> None:
    from accounts.ownership import ownership_lock

    name = team.name
    with transaction.atomic():
        # Before the cascade deletes its VolumeOwnership rows: a running sync's insert of
        # this team's rows must not slip in between (PostgreSQL).
        ownership_lock()
        team.delete()
    audit_record(action="team_delete", request=request, object_type="team", object_name=name)


def rule_add(*, team: Team, kind: str, value: str, request=None) -> TeamRule:
    value = _rule_check(kind, value)
    try:
        with transaction.atomic():
            rule = TeamRule.objects.create(team=team, kind=kind, value=value)
    except IntegrityError:
        raise TeamError(f"The team has this rule already: {value}.") from None
    audit_record(action="team_rule_add", request=request, object_type="team", object_name=team.name,
                 params={"kind": kind, "value": value})
    return rule


def rule_remove(*, rule: TeamRule, request=None) -> None:
    params = {"kind": rule.kind, "value": rule.value}
    team = rule.team
    with transaction.atomic():  # the rule and its team's VolumeOwnership rows go together
        rule.delete()
    audit_record(action="team_rule_remove", request=request, object_type="team", object_name=team.name,
                 params=params)


def member_set(*, team: Team, username: str, role: str, request=None) -> TeamMembership:
    """Add a user to the team, or change their role in it."""
    if role not in TeamMembership.Role.values:
        raise TeamError(f"Unknown role {role!r}: Viewer, Operator or Admin.")
    user = get_user_model().objects.filter(username=(username or "").strip()[:150]).first()
    if user is None:
        raise TeamError(f"No user named {username[:150]!r}.")
    membership, created = TeamMembership.objects.update_or_create(team=team, user=user, defaults={"role": role})
    audit_record(action="team_member_add" if created else "team_member_role", request=request, object_type="team",
                 object_name=team.name, params={"user": user.get_username(), "role": role})
    return membership


def member_remove(*, membership: TeamMembership, request=None) -> None:
    params = {"user": membership.user.get_username(), "role": membership.role}
    team = membership.team
    membership.delete()
    audit_record(action="team_member_remove", request=request, object_type="team", object_name=team.name,
                 params=params)
