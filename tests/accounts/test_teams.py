"""Teams: team x role x view. Another team's object answers 404, lists and counts leave it
out, volumes no rule matches are the global Admins' alone; pages (incl. htmx partials and
downloads) and the CLI's --user go through the one layer (accounts.scoping).

Volumes, containers and mounts are real engine objects (synced into the mirror); backups,
restores, jobs, policies and audit events are rows on them.
"""

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts import scoping
from accounts.models import AuditEvent, Team, TeamMembership, TeamRule
from accounts.services import audit_record
from jobs.models import Job
from policies.models import BackupPolicy
from restores.models import Restore
from tests import dockercli
from tests.backups.conftest import backup_root, no_enqueue  # noqa: F401  (fixtures)
from tests.backups.test_views import stored_backup

pytestmark = pytest.mark.django_db

SHOP, BLOG = f"shop-{dockercli.RUN_ID}", f"blog-{dockercli.RUN_ID}"


@pytest.fixture
def engine_objects():
    """Real engine objects, synced: shop: a labelled volume and a Compose project's volume
    (mounted by its container); blog: a labelled volume; and one volume no rule matches."""
    from volumes.services import mirror_sync

    names = {
        "shop": dockercli.create_volume(labels={"team": SHOP}),
        "shop_compose": dockercli.create_volume(),
        "blog": dockercli.create_volume(labels={"team": BLOG}),
        "orphan": dockercli.create_volume(),
    }
    names["shop_ctr"] = dockercli.run_container(f"{names['shop_compose']}:/data",
                                                labels={"com.docker.compose.project": f"proj-{SHOP}"})
    names["blog_ctr"] = dockercli.run_container(f"{names['blog']}:/data")
    mirror_sync()
    return names


@pytest.fixture
def mirror_objects():
    """The same as mirror rows only (the pages read nothing else)."""
    import uuid

    from volumes.models import Container, Mount, Volume

    names = {key: f"chtest-rows-{key}-{uuid.uuid4().hex[:6]}" for key in
             ("shop", "shop_compose", "blog", "orphan", "shop_ctr", "blog_ctr")}
    volumes = {key: Volume.objects.create(name=names[key], labels=labels, container_count=count) for key, labels, count in
               (("shop", {"team": SHOP}, 0), ("shop_compose", {}, 1), ("blog", {"team": BLOG}, 1), ("orphan", {}, 0))}
    for ctr, vol, project in (("shop_ctr", "shop_compose", f"proj-{SHOP}"), ("blog_ctr", "blog", "")):
        container = Container.objects.create(engine_id=uuid.uuid4().hex, name=names[ctr], state="running",
                                             compose_project=project)
        Mount.objects.create(container=container, kind="volume", volume=volumes[vol], source=names[vol],
                             destination="/data")
    return names


@pytest.fixture(params=["mirror"])
def world(request, make_user):
    """Teams, users, and rows on each team's volumes (over mirror rows; `engine_world`: real ones)."""
    request.getfixturevalue("no_enqueue"), request.getfixturevalue("backup_root")
    return _world(request.getfixturevalue(f"{request.param}_objects"), make_user)


@pytest.fixture
def engine_world(request, engine_objects, make_user):
    request.getfixturevalue("no_enqueue"), request.getfixturevalue("backup_root")
    return _world(engine_objects, make_user)


def _world(n, make_user):
    shop = Team.objects.create(name="shop")
    TeamRule.objects.create(team=shop, kind="label", value=f"team={SHOP}")
    TeamRule.objects.create(team=shop, kind="compose", value=f"proj-{SHOP}")
    blog = Team.objects.create(name="blog")
    TeamRule.objects.create(team=blog, kind="label", value=f"team={BLOG}")
    users = {"admin": make_user("Admin"), "global_viewer": make_user("Viewer")}
    for team, role in ((shop, "Viewer"), (shop, "Operator"), (shop, "Admin"), (blog, "Viewer"), (blog, "Operator")):
        user = make_user(None, f"{team.name}-{role.lower()}")
        TeamMembership.objects.create(team=team, user=user, role=role)
        users[f"{team.name}_{role.lower()}"] = user
    # A global Operator who is also in a team: membership narrows.
    users["narrowed"] = make_user("Operator")
    TeamMembership.objects.create(team=blog, user=users["narrowed"], role="Viewer")
    users["both"] = make_user(None, "both")
    TeamMembership.objects.create(team=shop, user=users["both"], role="Viewer")
    TeamMembership.objects.create(team=blog, user=users["both"], role="Operator")

    rows = {}
    for key in ("shop", "blog", "orphan"):
        backup = stored_backup(volume_name=n[key])
        job = Job.objects.create(kind="restore", target=n[key], status=Job.Status.SUCCEEDED, end_handled=True)
        restore = Restore.objects.create(job=job, backup=backup, mode="in_place", volume_name=n[key])
        policy = BackupPolicy.objects.create(name=f"policy-{key}", selector_kind="names",
                                             selector_value=n[key], cron="0 2 * * *", keep_last=3)
        audit_record(action=f"test_event_{key}", object_type="volume", object_name=n[key])
        rows[key] = {"volume": n[key], "backup": backup, "job": backup.job, "restore": restore, "policy": policy}
    return {"users": users, "rows": rows, "names": n, "shop": shop, "blog": blog}


def client_of(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def main_of(response) -> bytes:
    """The page's own part (the head carries a fresh CSRF token each time)."""
    return response.content.split(b"<main>", 1)[1]


def object_urls(row) -> dict:
    return {
        "volume": f"/volumes/{row['volume']}/",
        "usage": f"/insights/volumes/{row['volume']}/usage/?range=day",
        "backup": f"/backups/{row['backup'].pk}/",
        "download": f"/backups/{row['backup'].pk}/download/",
        "job": f"/jobs/{row['job'].pk}/",
        "restore": f"/restores/{row['restore'].pk}/",
        "policy": f"/policies/{row['policy'].pk}/",
        "back_up_form": f"/volumes/{row['volume']}/backup/",
        "restore_form": f"/backups/{row['backup'].pk}/restore/",
    }


# What each team role may open (True: 200; False: 403); other teams' objects: 404 whatever the role.
ALLOWED = {
    "viewer": {"volume", "usage", "backup", "job", "restore", "policy"},
    "operator": {"volume", "usage", "backup", "job", "restore", "policy", "download", "back_up_form", "restore_form"},
    "admin": {"volume", "usage", "backup", "job", "restore", "policy", "download", "back_up_form", "restore_form"},
}
HTMX = {"volume", "backup", "job", "restore", "policy"}  # pages with a polled partial


@pytest.mark.parametrize("who", ["shop_viewer", "shop_operator", "shop_admin"])
def test_matrix_own_team_by_role_and_other_team_404(engine_world, who):
    world = engine_world
    c = client_of(world["users"][who])
    role = who.split("_")[1]
    for page, url in object_urls(world["rows"]["shop"]).items():
        expected = 200 if page in ALLOWED[role] else 403
        response = c.get(url)
        assert response.status_code == expected, (who, page, url, response.status_code)
        if page in HTMX and expected == 200:
            assert c.get(url, HTTP_HX_REQUEST="true").status_code in (200, 286), (who, page, "htmx")  # 286: polling ends
    for key in ("blog", "orphan"):
        for page, url in object_urls(world["rows"][key]).items():
            response = c.get(url)
            if page in ALLOWED[role]:  # (a permission held nowhere stays 403, whatever the object)
                assert response.status_code == 404, (who, key, page, url, response.status_code)
                assert c.get(url, HTTP_HX_REQUEST="true").status_code == 404, (who, key, page, "htmx")


def test_404_for_another_team_says_the_same_as_for_nothing(world):
    c = client_of(world["users"]["blog_viewer"])
    pk = world["rows"]["shop"]["backup"].pk
    foreign = c.get(f"/backups/{pk}/")
    missing = c.get("/backups/999999/")
    assert foreign.status_code == missing.status_code == 404
    assert main_of(foreign) == main_of(missing).replace(b"999999", str(pk).encode())  # (the page names its path)
    shop = world["names"]["shop"]
    foreign = c.get(f"/volumes/{shop}/")
    nothing = c.get(f"/volumes/{shop}-none/")
    assert foreign.status_code == nothing.status_code == 404
    assert main_of(foreign) == main_of(nothing).replace(f"{shop}-none".encode(), shop.encode())


def test_download_streams_own_teams_archive_and_404s_the_others(world):
    c = client_of(world["users"]["shop_operator"])
    own = c.get(object_urls(world["rows"]["shop"])["download"])
    assert own.status_code == 200 and own["X-Checksum-SHA256"] == world["rows"]["shop"]["backup"].sha256
    assert b"".join(own.streaming_content)
    assert c.get(object_urls(world["rows"]["blog"])["download"]).status_code == 404


def test_compose_project_rule_gives_the_projects_mounted_volume_and_its_container(engine_world):
    world = engine_world
    c = client_of(world["users"]["shop_viewer"])
    assert c.get(f"/volumes/{world['names']['shop_compose']}/").status_code == 200
    containers = c.get("/containers/").content.decode()
    assert world["names"]["shop_ctr"] in containers
    assert world["names"]["blog_ctr"] not in containers
    assert world["names"]["blog"] not in containers


LISTS = ["/volumes/", "/volumes/?q=chtest", "/containers/", "/backups/", "/restores/", "/policies/", "/graph/",
         "/risks/", "/"]


@pytest.mark.parametrize("who,sees,hidden", [
    ("shop_viewer", ["shop"], ["blog", "orphan"]),
    ("blog_operator", ["blog"], ["shop", "orphan"]),
    ("narrowed", ["blog"], ["shop", "orphan"]),
    ("global_viewer", ["shop", "blog"], ["orphan"]),
    ("admin", ["shop", "blog", "orphan"], []),
])
def test_lists_and_partials_include_only_what_the_teams_own(world, who, sees, hidden):
    c = client_of(world["users"][who])
    names = world["names"]
    for url in LISTS:
        for htmx in (False, True):
            response = c.get(url, HTTP_HX_REQUEST="true") if htmx else c.get(url)
            if response.status_code == 204:  # the graph's unchanged-mirror poll
                continue
            assert response.status_code == 200, (url, htmx)
            body = response.content.decode()
            for key in hidden:
                assert names[key] not in body, (who, url, htmx, key)
    volumes = c.get("/volumes/").content.decode()
    for key in sees:
        assert names[key] in volumes, (who, key)


def test_counts_and_querysets_exclude_other_teams(world):
    user = world["users"]["shop_viewer"]
    rows = world["rows"]
    assert set(scoping.visible_volumes(user).values_list("name", flat=True)) >= {rows["shop"]["volume"]}
    assert not scoping.visible_volumes(user).filter(name__in=[rows["blog"]["volume"], rows["orphan"]["volume"]]).exists()
    assert list(scoping.visible_backups(user)) == [rows["shop"]["backup"]]
    assert list(scoping.visible_restores(user)) == [rows["shop"]["restore"]]
    assert set(scoping.visible_jobs(user)) == {rows["shop"]["job"], rows["shop"]["restore"].job}
    assert list(scoping.visible_policies(user)) == [rows["shop"]["policy"]]
    from insights.selectors import overview

    mine = overview(who=user)
    assert mine.volumes == 2  # the labelled volume and the project's
    assert overview(who=world["users"]["admin"]).volumes > mine.volumes


def test_audit_trail_of_a_team_admin_holds_their_teams_events_only(world):
    c = client_of(world["users"]["shop_admin"])
    body = c.get("/audit/").content.decode()
    rows = world["rows"]
    assert rows["shop"]["volume"] in body
    assert rows["blog"]["volume"] not in body and rows["orphan"]["volume"] not in body
    assert c.get("/audit/", HTTP_HX_REQUEST="true").status_code == 200
    assert client_of(world["users"]["shop_operator"]).get("/audit/").status_code == 403
    admin_body = client_of(world["users"]["admin"]).get("/audit/").content.decode()
    assert rows["blog"]["volume"] in admin_body and rows["orphan"]["volume"] in admin_body


def test_unmatched_volume_is_the_global_admins_and_flagged(world):
    orphan = world["names"]["orphan"]
    admin = client_of(world["users"]["admin"])
    page = admin.get(f"/volumes/{orphan}/")
    assert page.status_code == 200 and b"no team" in page.content
    listed = admin.get("/volumes/").content.decode()
    assert "no team" in listed.split(f'data-volume="{orphan}"', 1)[1].split("</tr>", 1)[0]
    assert b"no team" not in admin.get(f"/volumes/{world['names']['shop']}/").content
    for who in ("global_viewer", "shop_admin", "blog_operator"):
        assert client_of(world["users"][who]).get(f"/volumes/{orphan}/").status_code == 404, who
    assert orphan in client_of(world["users"]["admin"]).get("/accounts/teams/").content.decode()


def test_actions_on_another_teams_objects_answer_404_and_change_nothing(world):
    c = client_of(world["users"]["shop_operator"])
    rows = world["rows"]
    before = Job.objects.count()
    assert c.post(f"/volumes/{rows['blog']['volume']}/backup/", {"compression": "zstd"}).status_code == 404
    assert c.post(f"/backups/{rows['blog']['backup'].pk}/verify/").status_code == 404
    assert c.post(f"/jobs/{rows['blog']['job'].pk}/cancel/").status_code == 404
    assert Job.objects.count() == before
    # own team: the backup is queued
    response = c.post(f"/volumes/{rows['shop']['volume']}/backup/", {"compression": "zstd"})
    assert response.status_code == 302 and Job.objects.count() == before + 1
    # a viewer of the team: 403, audited
    viewer = client_of(world["users"]["shop_viewer"])
    assert viewer.post(f"/volumes/{rows['shop']['volume']}/backup/", {"compression": "zstd"}).status_code == 403
    assert AuditEvent.objects.filter(action="permission_denied", actor=world["users"]["shop_viewer"]).exists()


def test_bulk_backup_leaves_other_teams_volumes_out(world):
    c = client_of(world["users"]["both"])  # shop Viewer, blog Operator
    names = world["names"]
    response = c.post("/backups/bulk/", {"volume": [names["shop"], names["blog"]], "compression": "zstd",
                                     "stop_containers": "default"})
    assert response.status_code == 400  # the shop volume is not theirs to back up: named, nothing queued
    assert not Job.objects.filter(kind="backup", target=names["blog"], status=Job.Status.QUEUED).exists()
    response = c.post("/backups/bulk/", {"volume": [names["blog"]], "compression": "zstd", "stop_containers": "default"})
    assert response.status_code == 302
    assert Job.objects.filter(kind="backup", target=names["blog"], status=Job.Status.QUEUED).exists()


def test_team_role_on_a_policy_decides_editing(world):
    rows = world["rows"]
    assert client_of(world["users"]["shop_admin"]).get(f"/policies/{rows['shop']['policy'].pk}/edit/").status_code == 200
    assert client_of(world["users"]["shop_operator"]).get(f"/policies/{rows['shop']['policy'].pk}/edit/").status_code == 403
    assert client_of(world["users"]["shop_admin"]).get(f"/policies/{rows['blog']['policy'].pk}/edit/").status_code == 404
    # A team Admin may not save a selection reaching into another team's volumes.
    c = client_of(world["users"]["shop_admin"])
    response = c.post("/policies/new/", {
        "name": "sneaky", "selector_kind": "names", "selector_value": f"{rows['shop']['volume']} {rows['blog']['volume']}",
        "cron": "0 2 * * *", "timezone": "UTC", "compression": "zstd", "keep_last": 3, "overdue_grace_minutes": 60,
        **{f"keep_{n}": 0 for n in ("daily", "weekly", "monthly", "yearly")}, "max_age_days": 0,
    })
    assert response.status_code == 200 and not BackupPolicy.objects.filter(name="sneaky").exists(), \
        response.context["form"].errors
    assert b"not your teams" in response.content, response.context["form"].errors


def test_cli_user_acts_within_their_teams(engine_world):
    world = engine_world
    rows = world["rows"]
    user = world["users"]["shop_operator"].username
    with pytest.raises(CommandError, match="No backup"):
        call_command("restore_backup", str(rows["blog"]["backup"].pk), "--to", "copy-x", "--user", user)
    viewer = world["users"]["shop_viewer"].username
    with pytest.raises(CommandError, match="may not"):
        call_command("restore_backup", str(rows["shop"]["backup"].pk), "--to", dockercli.unique_name("copy"),
                     "--user", viewer)
    before = Restore.objects.count()
    call_command("restore_backup", str(rows["shop"]["backup"].pk), "--to", dockercli.unique_name("copy"),
                 "--user", user)
    assert Restore.objects.count() == before + 1
    admin = world["users"]["shop_admin"].username
    with pytest.raises(CommandError, match="No volume"):
        call_command("remove_volume", rows["blog"]["volume"], "--yes", "--user", admin, "--no-wait")
    with pytest.raises(CommandError, match="may not"):
        call_command("prune_volumes", "--yes", "--user", admin, "--no-wait")


def test_team_page_previews_rules_and_is_global_admins_only(world):
    admin = client_of(world["users"]["admin"])
    page = admin.get(f"/accounts/teams/{world['shop'].pk}/")
    assert page.status_code == 200
    assert world["names"]["shop"] in page.content.decode() and world["names"]["shop_compose"] in page.content.decode()
    preview = admin.get("/accounts/teams/preview/", {"kind": "label", "value": f"team={BLOG}"},
                        HTTP_HX_REQUEST="true").content.decode()
    assert "matches 1 volume" in preview and world["names"]["blog"] in preview
    bad = admin.get("/accounts/teams/preview/", {"kind": "label", "value": "=oops"}).content.decode()
    assert "Not a valid label key" in bad
    assert client_of(world["users"]["shop_admin"]).get(f"/accounts/teams/{world['shop'].pk}/").status_code == 403
    response = admin.post(f"/accounts/teams/{world['blog'].pk}/", {"action": "rule_add", "kind": "label", "value": "=x"})
    assert response.status_code == 302 and world["blog"].rules.count() == 1
    admin.post(f"/accounts/teams/{world['blog'].pk}/", {"action": "member_set", "username": "shop-viewer",
                                                        "role": "Operator"})
    assert TeamMembership.objects.filter(team=world["blog"], user__username="shop-viewer", role="Operator").exists()
    assert AuditEvent.objects.filter(action="team_member_add", object_name="blog").exists()


def test_switcher_narrows_lists_and_overview_to_one_team(world):
    c = client_of(world["users"]["both"])
    names = world["names"]
    home = c.get("/").content.decode()
    assert "All my teams" in home
    body = c.get("/volumes/").content.decode()
    assert names["shop"] in body and names["blog"] in body
    c.post("/accounts/teams/switch/", {"team": world["blog"].pk, "next": "/volumes/"})
    body = c.get("/volumes/").content.decode()
    assert names["blog"] in body and names["shop"] not in body
    # object pages of the other team stay reachable (the switcher narrows lists, not access)
    assert c.get(f"/volumes/{names['shop']}/").status_code == 200
    c.post("/accounts/teams/switch/", {"team": world["shop"].pk + 10_000})  # not theirs: ignored
    assert names["shop"] not in c.get("/volumes/").content.decode()
    c.post("/accounts/teams/switch/", {"team": ""})
    assert names["shop"] in c.get("/volumes/").content.decode()
