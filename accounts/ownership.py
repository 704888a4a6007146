"""Which volumes a team owns.

rule_q is the one definition of what a rule matches (labels JSON and Compose mounts, as a
Q over the mirror's Volume rows). Its result is kept in VolumeOwnership rather than
evaluated at each request: at 10,000 volumes evaluating every rule's JSON lookups and
mounts inside every team-scoped page's queries cost 250-550 ms a page (issue 16), reading
one indexed column costs little.

Kept, never stale, by ownership_refresh alone, in the transaction of the change it follows,
so a volume becomes a team's exactly when the write that makes it so commits:
- the mirror sync (volumes.services.mirror_sync), for its host, when anything changed:
  the only production writer of Volume.labels, Container.compose_project and Mount rows;
- a team rule's creation, change or deletion (any writer: teams' services, the admin, a
  shell), through the receivers below; a team's deletion cascades;
- a Volume, Container or Mount saved one row at a time outside the sync (a shell, a
  fixture), through the receivers below (the sync's bulk writes send no signals: it
  refreshes itself);
- accounts/migrations/0004_volume_ownership for the rows existing before.
"""

from django.db import connections, router, transaction
from django.db.models import BigIntegerField, Q, QuerySet, Value
from django.db.models.signals import post_delete, post_save

from accounts.models import Team, TeamRule, VolumeOwnership


def rule_q(kind: str, value: str) -> Q:
    """The volumes one rule matches, as a Q over Volume (validated by policies.selection;
    the same SQL as a policy's selection: policies.selection.selection_q)."""
    from policies.selection import parse, selection_q

    return selection_q(parse(kind, value))


def rules_q(rules) -> Q:
    """What these rules match together, evaluated (for filling VolumeOwnership)."""
    q = Q(pk__in=[])  # a team without rules owns nothing
    for rule in rules:
        q |= rule_q(rule.kind, rule.value)
    return q


# --- the kept table -----------------------------------------------------------------------


def owned_by_q(team_ids) -> Q:
    """The volumes owned by any of these teams (VolumeOwnership), as a Q over Volume."""
    team_ids = list(team_ids)
    if not team_ids:
        return Q(pk__in=[])
    rows = VolumeOwnership.objects.filter(team_id=team_ids[0]) if len(team_ids) == 1 else \
        VolumeOwnership.objects.filter(team_id__in=team_ids)
    return Q(pk__in=rows.values("volume_id"))


def owned_q() -> Q:
    """The volumes some team owns."""
    return Q(pk__in=VolumeOwnership.objects.values("volume_id"))


def ownership_lock(host_id: int | None = None) -> None:
    """Take the host rows (one, or all in id order) FOR UPDATE, as a sync of that host does
    first: whoever rewrites VolumeOwnership waits for a running sync (PostgreSQL; SQLite
    serializes writers anyway). Inside the caller's transaction."""
    from hosts.models import Host

    hosts = Host.objects.select_for_update().order_by("pk")
    list((hosts if host_id is None else hosts.filter(pk=host_id)).values_list("pk", flat=True))


def ownership_refresh(*, host=None, team=None, volume_ids=None) -> int:
    """Recompute VolumeOwnership for a scope: the volumes of `host`, the rows of `team`, the
    volumes `volume_ids` (any combination; none: everything). Deletes that scope's rows and
    re-inserts them with one INSERT ... SELECT per team driven by rule_q, inside the
    caller's transaction (or its own). Takes the scope's host rows FOR UPDATE first (what a
    sync of that host holds for its whole transaction), so on PostgreSQL a rule change and
    a sync never interleave their deletes and inserts. Returns the rows inserted."""
    from volumes.models import Volume

    host_id = getattr(host, "pk", host)
    team_id = getattr(team, "pk", team)
    with transaction.atomic():
        ownership_lock(host_id)
        rows, volumes = VolumeOwnership.objects.all(), Volume.objects.all()
        if host_id is not None:
            rows, volumes = rows.filter(volume__host_id=host_id), volumes.filter(host_id=host_id)
        if volume_ids is not None:
            volume_ids = [pk for pk in volume_ids if pk is not None]
            rows, volumes = rows.filter(volume_id__in=volume_ids), volumes.filter(pk__in=volume_ids)
        if team_id is not None:
            rows = rows.filter(team_id=team_id)
        rows.delete()
        rules: dict[int, list] = {}
        for rule in TeamRule.objects.filter(**({} if team_id is None else {"team_id": team_id})).order_by("pk"):
            rules.setdefault(rule.team_id, []).append(rule)
        return sum(_insert(volumes.filter(rules_q(team_rules)), tid) for tid, team_rules in rules.items())


def _insert(volumes: QuerySet, team_id: int) -> int:
    """INSERT INTO ownership (volume_id, team_id) SELECT id, <team> FROM the matched volumes."""
    selected = (volumes.order_by().annotate(_team=Value(team_id, output_field=BigIntegerField()))
                .values_list("pk", "_team"))
    sql, params = selected.query.sql_with_params()
    connection = connections[router.db_for_write(VolumeOwnership)]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(VolumeOwnership._meta.db_table)} "
                       f"({quote('volume_id')}, {quote('team_id')}) {sql}", params)
        return max(cursor.rowcount, 0)


# --- readers --------------------------------------------------------------------------------


def team_volumes(team) -> QuerySet:
    from volumes.models import Volume

    return Volume.objects.filter(owned_by_q([team.pk]))


def team_volumes_of_rule(rule) -> QuerySet:
    """One rule's volumes, evaluated (the team page's count per rule; not kept)."""
    from volumes.models import Volume

    return Volume.objects.present().filter(rule_q(rule.kind, rule.value))


def teams_exist() -> bool:
    return Team.objects.exists()


def unowned_names(names) -> set[str]:
    """Of these volume names, those no team's rule matches (the "no team" flag); nothing is
    flagged while there are no teams."""
    names = list(names)
    if not names or not teams_exist():
        return set()
    owned = set(VolumeOwnership.objects.filter(volume__name__in=names).values_list("volume__name", flat=True))
    return set(names) - owned


def is_unowned(volume) -> bool:
    return bool(unowned_names([volume.name]))


# --- single-row writers outside the sync ----------------------------------------------------


def _rule_changed(sender, instance, **kwargs):
    ownership_refresh(team=instance.team_id)


def _volume_saved(sender, instance, created, update_fields=None, **kwargs):
    if update_fields is None or "labels" in update_fields:
        ownership_refresh(volume_ids=[instance.pk])


def _container_saved(sender, instance, created, update_fields=None, **kwargs):
    if not created and (update_fields is None or {"compose_project", "gone_since"} & set(update_fields)):
        ids = list(instance.mounts.filter(volume__isnull=False).values_list("volume_id", flat=True))
        if ids:
            ownership_refresh(volume_ids=ids)


def _mount_saved(sender, instance, **kwargs):
    if instance.volume_id is not None:
        ownership_refresh(volume_ids=[instance.volume_id])


# No post_delete receiver on Mount: it would turn the sync's bulk deletes of mounts into
# row-by-row ones (Django fast-deletes only rows nobody listens to); the sync refreshes.
post_save.connect(_rule_changed, sender=TeamRule, dispatch_uid="ownership_rule_saved")
post_delete.connect(_rule_changed, sender=TeamRule, dispatch_uid="ownership_rule_deleted")
post_save.connect(_volume_saved, sender="volumes.Volume", dispatch_uid="ownership_volume_saved")
post_save.connect(_container_saved, sender="volumes.Container", dispatch_uid="ownership_container_saved")
post_save.connect(_mount_saved, sender="volumes.Mount", dispatch_uid="ownership_mount_saved")
