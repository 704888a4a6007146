"""Who sees and does what: global roles, narrowed by teams. The one permission layer for
the pages, the CLI's --user and the API.

- No team exists: the global roles (Django groups, accounts.roles) over every volume, as
  before teams.
- Global Admins (superusers, the Admin group) see and do everything, including volumes no
  team's rule matches ("no team").
- A team member sees only the volumes their teams' rules match, with their role in that
  team (the highest, where several of their teams own one). Membership narrows: a member's
  global Viewer/Operator group does not widen it.
- A global Viewer/Operator in no team (once teams exist): that role on every volume some
  team owns; volumes no rule matches are the global Admins' alone.

Everything else (backups, restores, jobs, policies, the audit trail) belongs to the team
that owns its volume: resolved in SQL, never per row in Python. Which team owns a volume is
read from accounts.VolumeOwnership (one indexed column), which accounts.ownership keeps
from the rules (rule_q) in the same transaction as the sync or rule change that moves it:
evaluating the rules' label JSON and mounts inside every page's queries cost 250-550 ms a
page at 10,000 volumes. Another team's object answers 404; a visible one the role may not
touch, 403.
"""

from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import Http404

from accounts import roles
from accounts.models import AuditEvent, Team, TeamMembership

# Which volumes a team owns: accounts.ownership (re-exported for the pages and the API).
from accounts.ownership import (  # noqa: F401
    is_unowned,
    owned_by_q,
    owned_q,
    rule_q,
    rules_q,
    team_volumes,
    team_volumes_of_rule,
    teams_exist,
    unowned_names,
)

SESSION_KEY = "cargohold_team"  # the team switcher's choice; absent: all my teams
_RANK = {roles.VIEWER: 1, roles.OPERATOR: 2, roles.ADMIN: 3}
_PERMS = {role: {f"accounts.{c}" for c in codenames} for role, codenames in roles.ROLE_PERMISSIONS.items()}


# --- a user's scope --------------------------------------------------------------------------


@dataclass
class Scope:
    everything: bool = False  # every volume (global Admin, or no teams at all): global perms
    owned_only: bool = False  # every team-owned volume: global perms
    team_roles: dict = field(default_factory=dict)  # team id -> role name (team members)
    team_q: dict = field(default_factory=dict)  # team id -> Q over Volume (its VolumeOwnership rows)


def scope_of(user) -> Scope:
    """Computed once per user object (a request's user, the CLI's, the API's)."""
    if user is None or not user.is_authenticated:
        return Scope()
    cached = getattr(user, "_cargohold_scope", None)
    if cached is not None:
        return cached
    if roles.role_of(user) == roles.ADMIN:
        scope = Scope(everything=True)
    else:
        members = list(TeamMembership.objects.filter(user=user))
        if members:
            scope = Scope(team_roles={m.team_id: m.role for m in members},
                          team_q={m.team_id: owned_by_q([m.team_id]) for m in members})
        elif teams_exist():
            scope = Scope(owned_only=True)
        else:
            scope = Scope(everything=True)
    user._cargohold_scope = scope
    return scope


def is_global_admin(user) -> bool:
    return bool(user is not None and user.is_authenticated and roles.role_of(user) == roles.ADMIN)


def _split(who):
    """(user, request or None, current team id or None) from a request or a user."""
    if hasattr(who, "session") and hasattr(who, "user"):
        return who.user, who, _current_team_id(who)
    return who, None, None


def _current_team_id(request) -> int | None:
    try:
        team_id = int(request.session.get(SESSION_KEY) or 0)
    except (TypeError, ValueError, AttributeError):
        return None
    return team_id if team_id and team_id in {t.pk for t in switcher_teams(request.user)} else None


def switcher_teams(user) -> list:
    """The teams the navigation's switcher offers: a member's teams, every team for a global Admin."""
    if user is None or not user.is_authenticated:
        return []
    if is_global_admin(user):
        return list(Team.objects.all())
    return list(Team.objects.filter(memberships__user=user).distinct())


def current_team(request):
    team_id = _current_team_id(request)
    return Team.objects.filter(pk=team_id).first() if team_id else None


def _volume_q(user, perm: str, team_id: int | None) -> Q | None:
    """The volumes on which `user` holds `perm`, as a Q; None: every volume."""
    scope = scope_of(user)
    if scope.everything or scope.owned_only:
        if not user.has_perm(perm):
            return Q(pk__in=[])
        if team_id is not None:
            return owned_by_q([team_id])
        return None if scope.everything else owned_q()
    # One subquery over the teams granting `perm` (not one per team OR-ed together).
    return owned_by_q(tid for tid, role in scope.team_roles.items() if perm in _PERMS[role] and team_id in (None, tid))


# --- what a user sees ------------------------------------------------------------------------
# `who`: a user (API, CLI), or a request (pages: narrowed to the team switcher's team).


def visible_volumes(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    from volumes.models import Volume

    user, _, team_id = _split(who)
    q = _volume_q(user, perm, team_id)
    return Volume.objects.all() if q is None else Volume.objects.filter(q)


def _names(who, perm):
    """The visible volumes' names as a subquery; None: every volume (and what has none)."""
    user, _, team_id = _split(who)
    if _volume_q(user, perm, team_id) is None:
        return None
    return visible_volumes(who, perm).values("name")


def _volume_ids(who, perm):
    """The visible volumes' ids as a subquery (mounts join on it without the name); None: every volume."""
    user, _, team_id = _split(who)
    if _volume_q(user, perm, team_id) is None:
        return None
    return visible_volumes(who, perm).order_by().values("pk")


def visible_mounts(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    from volumes.models import Mount

    ids = _volume_ids(who, perm)
    if ids is None:
        return Mount.objects.all()
    # A visible container's binds and tmpfs belong to no team: shown beside its volumes.
    mine = Mount.objects.filter(volume_id__in=ids).values("container_id")
    return Mount.objects.filter(Q(volume_id__in=ids) | Q(volume__isnull=True, container_id__in=mine))


def visible_containers(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    """Containers mounting a visible volume (their other mounts: visible_mounts)."""
    from volumes.models import Container, Mount

    ids = _volume_ids(who, perm)
    if ids is None:
        return Container.objects.all()
    return Container.objects.filter(pk__in=Mount.objects.filter(volume_id__in=ids).values("container_id"))


def visible_backups(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    from backups.models import Backup

    names = _names(who, perm)
    return Backup.objects.all() if names is None else Backup.objects.filter(volume_name__in=names)


def visible_restores(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    """A restore belongs to its source backup's volume and to its target volume."""
    from restores.models import Restore

    names = _names(who, perm)
    if names is None:
        return Restore.objects.all()
    return Restore.objects.filter(Q(volume_name__in=names) | Q(backup__volume_name__in=names))


def _as_text(field_name: str):
    return Cast(field_name, CharField())


def visible_jobs(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    """A job acting on a visible volume (its target), or the job of a visible backup or
    restore, or one naming a visible backup in its params (verify, delete)."""
    from jobs.models import Job

    names = _names(who, perm)
    if names is None:
        return Job.objects.all()
    backups = visible_backups(who, perm)
    backup_ids = backups.annotate(_t=_as_text("pk")).values("_t")
    return Job.objects.annotate(_backup=_as_text(KeyTextTransform("backup", "params"))).filter(
        Q(target_type="volume", target__in=names)
        | Q(pk__in=backups.values("job_id"))
        | Q(pk__in=visible_restores(who, perm).values("job_id"))
        | Q(target_type="backup", _backup__in=backup_ids)
    )


def visible_policies(who, perm: str = roles.VIEW_INVENTORY) -> QuerySet:
    """Policies whose every selected volume is visible (and that select at least one): a
    policy spanning teams is the global Admins' (its page would name the others' volumes).
    Policies are few; each is decided in SQL by two EXISTS (a visible volume it selects, an
    invisible one it selects) rather than by loading its selection's names (at 10,000
    volumes a tier-wide selection is thousands of rows, for each policy)."""
    from policies.models import BackupPolicy

    user, _, team_id = _split(who)
    visible_q = _volume_q(user, perm, team_id)
    if visible_q is None:
        return BackupPolicy.objects.all()
    ids = [p.pk for p in BackupPolicy.objects.all() if _selects_only(p, visible_q)]
    return BackupPolicy.objects.filter(pk__in=ids)


def _selects_only(policy, visible_q: Q) -> bool:
    """Whether the policy selects at least one volume now and only volumes in `visible_q`
    (the same answer as _covered(_policy_names(policy), visible names))."""
    from policies.selection import NAMES, SelectionError
    from volumes.models import Volume

    try:
        selection = policy.selection
    except SelectionError:
        return False
    if selection.kind == NAMES:  # listed names count even before the volume exists
        names = set(selection.names)
        return Volume.objects.filter(visible_q, name__in=names).count() == len(names)
    selected = Volume.objects.present().filter(rule_q(selection.kind, policy.selector_value)).order_by()
    return selected.filter(visible_q).exists() and not selected.exclude(visible_q).exists()


def _policy_names(policy) -> list[str]:
    from policies.selection import SelectionError, selected_volume_names

    try:
        return selected_volume_names(policy.selection)
    except SelectionError:
        return []


def _covered(names, visible: set) -> bool:
    return bool(names) and set(names) <= visible


def visible_audit(who, perm: str = roles.MANAGE_USERS) -> QuerySet:
    """Events about the visible volumes and their backups, restores, jobs and policies
    (for a team Admin: their teams'); every event for a global reader."""
    names = _names(who, perm)
    user = _split(who)[0]
    if names is None:
        return AuditEvent.objects.all() if user.has_perm(perm) else AuditEvent.objects.none()
    ids = {
        "backup": visible_backups(who, perm), "restore": visible_restores(who, perm),
        "job": visible_jobs(who, perm), "policy": visible_policies(who, perm),
    }
    q = Q(object_type="volume", object_name__in=names)
    for object_type, qs in ids.items():
        q |= Q(object_type=object_type, object_name__in=qs.annotate(_t=_as_text("pk")).values("_t"))
    return AuditEvent.objects.annotate(_volume=KeyTextTransform("volume", "params")).filter(
        q | Q(_volume__in=names)
    )


# --- one object ------------------------------------------------------------------------------


def _object_names(obj) -> list[str]:
    """The volume names an object belongs to (any of them makes it visible)."""
    from backups.models import Backup
    from jobs.models import Job
    from restores.models import Restore
    from volumes.models import Container, Mount, Volume

    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, Volume):
        return [obj.name]
    if isinstance(obj, Mount):
        return [obj.volume.name] if obj.volume_id else []
    if isinstance(obj, Container):
        return list(obj.mounts.filter(volume__isnull=False).values_list("volume__name", flat=True))
    if isinstance(obj, Backup):
        return [obj.volume_name]
    if isinstance(obj, Restore):
        return [obj.volume_name] + ([obj.backup.volume_name] if obj.backup_id else [])
    if isinstance(obj, Job):
        names = [obj.target] if obj.target_type == "volume" else []
        names += list(Backup.objects.filter(job=obj).values_list("volume_name", flat=True))
        for restore in Restore.objects.filter(job=obj).select_related("backup"):
            names += _object_names(restore)
        if obj.target_type == "backup" and str((obj.params or {}).get("backup", "")).isdigit():
            names += list(Backup.objects.filter(pk=obj.params["backup"]).values_list("volume_name", flat=True))
        return names
    raise TypeError(f"No team owns a {type(obj).__name__}.")


def _name_roles(user, names) -> dict[str, str]:
    """name -> the user's role on that volume, for the visible ones among `names`."""
    from accounts.models import VolumeOwnership

    scope = scope_of(user)
    names = set(names)
    if not names:
        return {}
    if scope.everything or scope.owned_only:
        role = roles.role_of(user) or "(own permissions)"
        if scope.everything:
            return {n: role for n in names}
        owned = VolumeOwnership.objects.filter(volume__name__in=names).values_list("volume__name", flat=True)
        return {n: role for n in owned}
    found: dict[str, str] = {}
    for name, tid in (VolumeOwnership.objects.filter(volume__name__in=names, team_id__in=list(scope.team_roles))
                      .values_list("volume__name", "team_id")):
        role = scope.team_roles[tid]
        if _RANK[role] > _RANK.get(found.get(name), 0):
            found[name] = role
    return found


def role_for(user, obj) -> str | None:
    """The user's role on `obj` (the highest over the volumes it belongs to; for a policy,
    the lowest over the volumes it selects), or None: not visible to them."""
    from policies.models import BackupPolicy

    if isinstance(obj, BackupPolicy):
        if scope_of(user).everything:
            return roles.role_of(user) or "(own permissions)"
        names = _policy_names(obj)
        found = _name_roles(user, names)
        if not _covered(names, set(found)):
            return None
        return min(found.values(), key=lambda r: _RANK.get(r, 0))
    found = _name_roles(user, _object_names(obj))
    if not found:
        return (roles.role_of(user) or "(own permissions)") if scope_of(user).everything else None
    return max(found.values(), key=lambda r: _RANK.get(r, 0))


def can(user, perm: str, obj) -> bool:
    role = role_for(user, obj)
    if role is None:
        return False
    scope = scope_of(user)
    if scope.everything or scope.owned_only:
        return user.has_perm(perm)
    return perm in _PERMS[role]


def can_anywhere(user, perm: str) -> bool:
    """Holds `perm` globally (not narrowed by a team) or in at least one of their teams."""
    scope = scope_of(user)
    if user is None or not user.is_authenticated:
        return False
    if scope.everything or scope.owned_only:
        return user.has_perm(perm)
    return any(perm in _PERMS[role] for role in scope.team_roles.values())


def can_globally(user, perm: str) -> bool:
    scope = scope_of(user)
    return bool(user is not None and user.is_authenticated and scope.everything and user.has_perm(perm))


def _deny(who, perm: str, object_type: str, object_name: str):
    from accounts.permissions import denial_message
    from accounts.services import audit_record

    user, request, _ = _split(who)
    params = {"permission": perm}
    if request is not None:
        params.update(method=request.method, path=request.path)
    audit_record(action="permission_denied", request=request, actor=user, object_type=object_type,
                 object_name=object_name or (request.path if request is not None else ""), params=params,
                 result=AuditEvent.Result.DENIED)
    raise PermissionDenied(denial_message(perm))


def require_anywhere(who, perm: str, *, object_type: str = "", object_name: str = "") -> None:
    """For lists and forms: 403 (audited) unless the user holds `perm` somewhere."""
    if not can_anywhere(_split(who)[0], perm):
        _deny(who, perm, object_type, object_name)


def require_global(who, perm: str, *, object_type: str = "", object_name: str = "") -> None:
    """For what is no team's (creating and pruning volumes, teams, lockouts)."""
    if not can_globally(_split(who)[0], perm):
        _deny(who, perm, object_type, object_name)


def require_on(who, perm: str, obj, *, object_type: str = "", object_name: str = "",
               missing: str = "Not found."):
    """403 (audited) when the user holds `perm` nowhere (as before teams); 404 when `obj` is
    None or another team's, with the same `missing` text (no existence leaks); 403
    (audited) when their role on it is too low. Returns `obj`."""
    user = _split(who)[0]
    require_anywhere(who, perm, object_type=object_type, object_name=object_name)
    if obj is None or role_for(user, obj) is None:
        raise Http404(missing)
    if not can(user, perm, obj):
        _deny(who, perm, object_type, object_name)
    return obj


def get_visible_or_404(queryset: QuerySet, **lookup):
    obj = queryset.filter(**lookup).first()
    if obj is None:
        raise Http404(f"No such {queryset.model._meta.verbose_name}.")
    return obj
