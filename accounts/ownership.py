"""Which volumes a team owns: its rules as Q objects over the mirror's Volume rows (labels
JSON and mounts), evaluated in SQL at each request, never copied (accounts.scoping)."""

from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.lookups import Exact

from accounts.models import Team, TeamRule


def rule_q(kind: str, value: str) -> Q:
    """The volumes one rule matches, as a Q over Volume (validated by policies.selection)."""
    from policies.selection import COMPOSE_LABEL, parse
    from volumes.models import Mount

    selection = parse(kind, value)
    if kind == TeamRule.Kind.LABEL:
        q = Q()
        for key, val in selection.labels:
            # Exact on the key's text: label keys hold dots and may hold "__".
            q &= Q(labels__has_key=key) if val is None else Q(Exact(KeyTextTransform(key, "labels"), val))
        return q
    # A Compose project's volumes: labelled with it, or mounted by its (present) containers.
    mounted = Mount.objects.filter(container__compose_project=selection.project, container__gone_since__isnull=True,
                                   volume__isnull=False).values("volume_id")
    return Q(Exact(KeyTextTransform(COMPOSE_LABEL, "labels"), selection.project)) | Q(pk__in=mounted)


def rules_q(rules) -> Q:
    q = Q(pk__in=[])  # a team without rules owns nothing
    for rule in rules:
        q |= rule_q(rule.kind, rule.value)
    return q


def team_volumes(team) -> QuerySet:
    from volumes.models import Volume

    return Volume.objects.filter(rules_q(team.rules.all()))


def team_volumes_of_rule(rule) -> QuerySet:
    from volumes.models import Volume

    return Volume.objects.present().filter(rule_q(rule.kind, rule.value))


def teams_exist() -> bool:
    return Team.objects.exists()


def owned_q() -> Q:
    return rules_q(TeamRule.objects.all())


def unowned_names(names) -> set[str]:
    """Of these volume names, those no team's rule matches (the "no team" flag); nothing is
    flagged while there are no teams."""
    from volumes.models import Volume

    names = list(names)
    if not names or not teams_exist():
        return set()
    owned = set(Volume.objects.filter(name__in=names).filter(owned_q()).values_list("name", flat=True))
    return set(names) - owned


def is_unowned(volume) -> bool:
    return bool(unowned_names([volume.name]))
