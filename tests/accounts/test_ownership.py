"""VolumeOwnership, the teams' rules' result kept for speed (accounts.ownership): it follows
every change of what it derives from in the same transaction: the mirror sync of the
volume's host (labels, Compose mounts), a rule's addition and removal, a team's deletion.

Volumes and containers are real engine objects; each test syncs hosts of its own (on the
local engine, under CARGOHOLD_WORKER_HOST), so no session worker's sync of the default host
mirrors anything before the test's own sync does.
"""

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import connection

from accounts import scoping, teams
from accounts.models import Team, TeamMembership, TeamRule, VolumeOwnership
from accounts.ownership import ownership_refresh, rules_q
from hosts import refs
from hosts.models import Host
from policies.models import BackupPolicy
from tests import dockercli
from volumes import services
from volumes.models import Volume

pytestmark = [pytest.mark.django_db, pytest.mark.engine]

SHOP = f"shop-{dockercli.RUN_ID}"


@pytest.fixture
def sync_as(monkeypatch):
    """sync_as(host): mirror the local engine as that host (created once, its url blank).
    `containers=False`: as an engine running none (a container's engine id is unique in the
    mirror, so one engine's containers cannot be mirrored as two hosts')."""
    list_containers = services.engine.list_containers

    def sync(host: str, *, containers: bool = True):
        Host.objects.get_or_create(name=host)
        monkeypatch.setenv("CARGOHOLD_WORKER_HOST", host)
        monkeypatch.setattr(services.engine, "list_containers", list_containers if containers else list)
        return services.mirror_sync()

    return sync


@pytest.fixture
def host_a():
    return f"owna{dockercli.RUN_ID}".replace("_", "-")[:40]


@pytest.fixture
def host_b():
    return f"ownb{dockercli.RUN_ID}".replace("_", "-")[:40]


@pytest.fixture
def shop(make_user):
    """The shop team (a label rule, a Compose rule) and its Operator."""
    team = Team.objects.create(name="shop")
    teams.rule_add(team=team, kind="label", value=f"team={SHOP}")
    teams.rule_add(team=team, kind="compose", value=f"proj-{SHOP}")
    operator = make_user(None, "shop-operator")
    TeamMembership.objects.create(team=team, user=operator, role="Operator")
    return SimpleNamespace(team=team, operator=operator)


def visible(user) -> set[str]:
    user = type(user).objects.get(pk=user.pk)  # a fresh user: no cached scope
    return set(scoping.visible_volumes(user).values_list("name", flat=True))


def kept() -> set[tuple[int, int]]:
    return set(VolumeOwnership.objects.values_list("volume_id", "team_id"))


def evaluated() -> set[tuple[int, int]]:
    """What the rules match now, evaluated over the mirror (rule_q, the one definition)."""
    pairs = set()
    for team in Team.objects.prefetch_related("rules"):
        pairs |= {(pk, team.pk) for pk in Volume.objects.filter(rules_q(team.rules.all())).values_list("pk", flat=True)}
    return pairs


def recreate(name: str, labels: dict | None = None) -> None:
    """Docker cannot relabel a volume: the same name again, with other labels."""
    dockercli.docker("volume", "rm", name)
    dockercli.create_volume(name, labels=labels)


def test_a_label_added_on_the_engine_makes_the_volume_the_teams_when_the_sync_commits(shop, sync_as, host_a):
    name = dockercli.create_volume()
    ref = refs.make_ref(host_a, name)
    sync_as(host_a)
    assert ref not in visible(shop.operator)
    recreate(name, {"team": SHOP})
    assert ref not in visible(shop.operator)  # the engine changed, the mirror not yet
    result = sync_as(host_a)
    assert result.volumes_updated >= 1
    # The sync's writes are bulk ones (no signals): only its own refresh can have done this.
    assert ref in visible(shop.operator)
    assert kept() == evaluated()


def test_a_label_removed_on_the_engine_takes_the_volume_away_at_the_next_sync(shop, sync_as, host_a):
    name = dockercli.create_volume(labels={"team": SHOP})
    ref = refs.make_ref(host_a, name)
    sync_as(host_a)
    assert ref in visible(shop.operator)
    recreate(name)
    sync_as(host_a)
    assert ref not in visible(shop.operator)
    assert scoping.unowned_names([ref]) == {ref}
    assert kept() == evaluated()


def test_a_compose_projects_container_mounting_a_volume_gives_it_to_the_team_and_takes_it_back(shop, sync_as, host_a):
    name = dockercli.create_volume()  # unlabelled: the team's through its project's container only
    ref = refs.make_ref(host_a, name)
    sync_as(host_a)
    assert ref not in visible(shop.operator)
    container = dockercli.run_container(f"{name}:/data", labels={"com.docker.compose.project": f"proj-{SHOP}"})
    result = sync_as(host_a)
    assert result.mounts_added >= 1
    assert ref in visible(shop.operator)
    assert kept() == evaluated()
    dockercli.docker("rm", "-f", container)
    sync_as(host_a)
    assert ref not in visible(shop.operator)
    assert kept() == evaluated()


def test_a_sync_refreshes_its_own_host_only(shop, sync_as, host_a, host_b):
    name = dockercli.create_volume(labels={"team": SHOP})
    on_a, on_b = refs.make_ref(host_a, name), refs.make_ref(host_b, name)
    sync_as(host_a)
    sync_as(host_b, containers=False)
    assert {on_a, on_b} <= visible(shop.operator)
    recreate(name)
    sync_as(host_b, containers=False)
    mine = visible(shop.operator)
    # Host a's mirror still has the label (its sync has not run): still the team's.
    assert on_b not in mine and on_a in mine
    sync_as(host_a)
    assert on_a not in visible(shop.operator)
    assert kept() == evaluated()


def test_a_sync_with_nothing_new_keeps_the_rows(shop, sync_as, host_a, monkeypatch):
    dockercli.create_volume(labels={"team": SHOP})
    # One listing for both syncs: other tests add and remove engine volumes meanwhile.
    listing = services.engine.list_volumes()
    monkeypatch.setattr(services.engine, "list_volumes", lambda: listing)
    sync_as(host_a, containers=False)
    before = set(VolumeOwnership.objects.values_list("pk", flat=True))
    assert before
    assert not sync_as(host_a, containers=False).changed
    assert set(VolumeOwnership.objects.values_list("pk", flat=True)) == before  # not deleted and re-inserted


def test_adding_and_removing_a_rule_changes_what_the_team_sees_at_once(shop, sync_as, host_a):
    name = dockercli.create_volume(labels={"tier": f"db-{dockercli.RUN_ID}"})
    ref = refs.make_ref(host_a, name)
    sync_as(host_a)
    assert ref not in visible(shop.operator)
    rule = teams.rule_add(team=shop.team, kind="label", value=f"tier=db-{dockercli.RUN_ID}")
    assert ref in visible(shop.operator)
    assert kept() == evaluated()
    teams.rule_remove(rule=rule)
    assert ref not in visible(shop.operator)
    assert kept() == evaluated()


def test_a_deleted_team_owns_nothing_and_its_volume_is_flagged_no_team(shop, sync_as, host_a):
    name = dockercli.create_volume(labels={"team": SHOP})
    ref = refs.make_ref(host_a, name)
    sync_as(host_a)
    Team.objects.create(name="other")  # teams still exist: the flag is shown
    assert VolumeOwnership.objects.filter(team=shop.team).exists()
    team_id = shop.team.pk
    teams.team_delete(team=shop.team)
    assert not VolumeOwnership.objects.filter(team_id=team_id).exists()
    assert scoping.unowned_names([ref]) == {ref}
    assert kept() == evaluated()


def test_a_rule_written_outside_the_teams_services_refreshes_too(shop, sync_as, host_a):
    """The admin, a shell: any TeamRule write keeps the table (the model's receivers)."""
    name = dockercli.create_volume(labels={"app": f"x-{dockercli.RUN_ID}"})
    ref = refs.make_ref(host_a, name)
    sync_as(host_a)
    rule = TeamRule.objects.create(team=shop.team, kind="label", value=f"app=x-{dockercli.RUN_ID}")
    assert ref in visible(shop.operator)
    rule.delete()
    assert ref not in visible(shop.operator)


def test_a_team_scoped_policy_list_follows_the_table(shop, sync_as, host_a, host_b):
    """A policy is the team's while everything it selects is the team's (visible_policies)."""
    name = dockercli.create_volume(labels={"team": SHOP})
    sync_as(host_a)
    mine = BackupPolicy.objects.create(name="mine", selector_kind="label", selector_value=f"team={SHOP}",
                                       cron="0 2 * * *", keep_last=3)
    named = BackupPolicy.objects.create(name="named", selector_kind="names",
                                        selector_value=refs.make_ref(host_a, name), cron="0 2 * * *", keep_last=3)
    nothing = BackupPolicy.objects.create(name="nothing", selector_kind="label", selector_value="no-such-label",
                                          cron="0 2 * * *", keep_last=3)
    assert set(scoping.visible_policies(shop.operator)) == {mine, named}
    other_label = f"other-{dockercli.RUN_ID}"
    other = dockercli.create_volume(labels={"team": SHOP, other_label: "1"})
    # A second policy selecting a volume of another team's: the global Admins' alone.
    spanning = BackupPolicy.objects.create(name="spanning", selector_kind="label", selector_value=f"{other_label}=1",
                                           cron="0 2 * * *", keep_last=3)
    sync_as(host_b, containers=False)
    assert spanning in set(scoping.visible_policies(shop.operator))  # only on shop volumes so far
    recreate(other, {other_label: "1"})
    sync_as(host_b, containers=False)
    assert set(scoping.visible_policies(shop.operator)) == {mine, named}
    assert nothing not in set(scoping.visible_policies(shop.operator))


def test_the_migration_fills_the_table_for_existing_volumes_and_rules(shop, sync_as, host_a):
    dockercli.create_volume(labels={"team": SHOP})
    name = dockercli.create_volume()
    dockercli.run_container(f"{name}:/data", labels={"com.docker.compose.project": f"proj-{SHOP}"})
    sync_as(host_a)
    expected = kept()
    assert len(expected) >= 2
    VolumeOwnership.objects.all().delete()
    migration = importlib.import_module("accounts.migrations.0004_volume_ownership")
    migration.fill(django_apps, SimpleNamespace(connection=connection))
    assert kept() == expected == evaluated()


def test_a_full_refresh_rebuilds_what_the_sync_and_rules_kept(shop, sync_as, host_a, host_b):
    dockercli.create_volume(labels={"team": SHOP})
    sync_as(host_a)
    sync_as(host_b, containers=False)
    expected = kept()
    ownership_refresh()
    assert kept() == expected == evaluated()
