"""The overview's protection summary counted in SQL (policies.selectors.health_figures) says
what health_summary (every volume's Protection, row by row) says: over mirror rows with each
kind of selection, each protection state, drills and the ten-item lists."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import Backup
from drills.models import Drill
from jobs.models import Job
from policies.models import BackupPolicy, PolicyRun
from policies.selectors import SHOWN, health_figures, health_summary
from volumes.models import Container, Mount, Volume

pytestmark = pytest.mark.django_db


def _backup(name, at, *, status="succeeded", origin="schedule"):
    job = Job.objects.create(kind="backup", status=status, finished_at=at, target=name)
    return Backup.objects.create(job=job, volume_name=name, origin=origin, key="k" if status == "succeeded" else "")


def _failed_run(policy, name, at):
    job = Job.objects.create(kind="backup", status=Job.Status.FAILED, finished_at=at, target=name, error="disk full")
    return PolicyRun.objects.create(policy=policy, volume_name=name, scheduled_for=at, job=job)


def _drill(name, status, at):
    job = Job.objects.create(kind="drill", status=status, finished_at=at, target=name)
    return Drill.objects.create(job=job, volume_name=name)


@pytest.fixture
def catalogue():
    now = timezone.now()
    month = now - timedelta(days=30)
    volumes = {
        "db_ok": {"tier": "db"}, "db_old": {"tier": "db"}, "db_never": {"tier": "db"}, "db_new": {"tier": "db"},
        "db_failed": {"tier": "db"}, "db_recovered": {"tier": "db"}, "db_imported": {"tier": "db"},
        "shop_label": {"com.docker.compose.project": "shop"}, "shop_mounted": {}, "shop_gone_user": {},
        "named1": {}, "web": {"tier": "web"}, "keyed": {"backup": ""}, "nothing": {},
    }
    for name, labels in volumes.items():
        Volume.objects.create(name=name, labels=labels, container_count=2 if name == "web" else 0)
    for i in range(SHOWN + 2):  # more in use without a policy than the summary lists
        Volume.objects.create(name=f"u{i:02d}", container_count=1)
    Volume.objects.create(name="gone_db", labels={"tier": "db"}, gone_since=now)
    Volume.objects.exclude(name="db_new").update(first_seen_at=month)

    shop = Container.objects.create(engine_id="s" * 64, name="shop-app-1", compose_project="shop")
    old = Container.objects.create(engine_id="o" * 64, name="shop-old-1", compose_project="shop", gone_since=now)
    Mount.objects.create(container=shop, kind="volume", volume=Volume.objects.get(name="shop_mounted"), destination="/a")
    Mount.objects.create(container=old, kind="volume", volume=Volume.objects.get(name="shop_gone_user"), destination="/b")

    since = {"schedule_since": month}
    db = BackupPolicy.objects.create(name="db", selector_kind="label", selector_value="tier=db", cron="0 3 * * *", **since)
    BackupPolicy.objects.create(name="shop", selector_kind="compose", selector_value="shop", cron="0 3 * * *", **since)
    BackupPolicy.objects.create(name="listed", selector_kind="names", selector_value="named1 not_there", cron="0 3 * * *",
                                schedule_since=now)
    BackupPolicy.objects.create(name="keyed", selector_kind="label", selector_value="backup", cron="0 3 * * *", **since)
    BackupPolicy.objects.create(name="web", selector_kind="label", selector_value="tier=web", cron="0 3 * * *",
                                enabled=False, **since)
    BackupPolicy.objects.create(name="broken", selector_kind="label", selector_value="not a label!", cron="0 3 * * *",
                                **since)

    _backup("db_ok", now - timedelta(hours=1))
    _backup("db_old", now - timedelta(days=5))
    _backup("db_failed", now - timedelta(days=10))
    _failed_run(db, "db_failed", now - timedelta(hours=3))
    _failed_run(db, "db_recovered", now - timedelta(hours=3))
    _backup("db_recovered", now - timedelta(hours=1), origin="manual")  # a good backup since ends the alarm
    _backup("db_imported", now - timedelta(hours=1), origin="imported")  # protects nothing
    _backup("shop_label", now - timedelta(hours=2))
    _backup("keyed", now - timedelta(hours=2), status="failed")

    _drill("db_ok", "succeeded", now - timedelta(hours=1))
    _drill("shop_label", "succeeded", now - timedelta(days=2))
    _drill("shop_label", "failed", now - timedelta(days=1))  # the latest failed: not proven
    _drill("u00", "succeeded", now - timedelta(days=1))  # proven, though no policy covers it
    return now


def test_the_counted_summary_is_health_summarys(catalogue):
    summary = health_summary(now=catalogue)

    figures = health_figures(now=catalogue)

    assert (figures.volumes, figures.covered, figures.policies, figures.proven, figures.unprotected_unused) == (
        summary.volumes, summary.covered, summary.policies, summary.proven, summary.unprotected_unused)
    assert (figures.n_unprotected_in_use, figures.n_failed, figures.n_overdue, figures.n_drill_failed) == (
        len(summary.unprotected_in_use), len(summary.failed), len(summary.overdue), len(summary.drill_failed))
    for key in ("unprotected_in_use", "failed", "overdue"):
        assert [(p.volume, p.state) for p in getattr(figures, key)] == [
            (p.volume, p.state) for p in getattr(summary, key)[:SHOWN]]
    assert figures.problems == summary.problems


def test_each_state_is_counted_where_it_belongs(catalogue):
    figures = health_figures(now=catalogue)

    assert figures.volumes == 14 + SHOWN + 2  # not the gone one
    # db_* (7), shop_label (its label), shop_mounted (its project's container), named1, keyed
    assert figures.covered == 11
    assert figures.policies == 5  # enabled ones, the broken selection too
    assert [p.volume for p in figures.failed] == ["db_failed"]
    assert "disk full" in figures.failed[0].last_run.message
    # db_old: its last success is 5 days old; db_never, db_imported, keyed (its one backup failed),
    # shop_mounted: none in a month. Not db_new (seen just now) nor named1 (its policy is new).
    assert [p.volume for p in figures.overdue] == ["db_imported", "db_never", "db_old", "keyed", "shop_mounted"]
    assert (figures.n_unprotected_in_use, [p.volume for p in figures.unprotected_in_use]) == (
        SHOWN + 3, [f"u{i:02d}" for i in range(SHOWN)])  # web's policy is disabled
    assert figures.unprotected_unused == 2  # shop_gone_user (its project's container is gone), nothing
    assert (figures.proven, figures.n_drill_failed) == (2, 1)


def test_no_policy_no_drill(db):
    Volume.objects.create(name="alone", container_count=1)
    Volume.objects.create(name="idle")

    figures = health_figures()

    assert (figures.volumes, figures.covered, figures.policies, figures.n_unprotected_in_use,
            figures.unprotected_unused, figures.n_failed, figures.n_overdue, figures.proven) == (2, 0, 0, 1, 1, 0, 0, 0)
    assert [p.volume for p in figures.unprotected_in_use] == ["alone"] and figures.problems == 1


def test_the_overview_shows_the_counted_summary(client_for, catalogue):
    page = client_for("Viewer").get("/").content.decode()
    section = page[page.index('id="protection-summary"'):]
    section = section[: section.index("</section>")]

    assert "11 of 26 volumes" in section
    assert '<span class="prot prot-unprotected-in-use">13</span>' in section and "and 3 more" in section
    assert '<span class="prot prot-failed">1</span>' in section and "disk full" in section
    assert '<span class="prot prot-overdue">5</span>' in section
    assert "2 by a restore drill" in section and "1 failed" in section


def test_a_team_viewer_counts_and_sees_only_the_teams_volumes(make_user):
    """The protection summary of a team Operator: their team's volumes only, by name too."""
    from accounts import teams
    from accounts.models import Team, TeamMembership

    Volume.objects.create(name="shop_db", container_count=1, labels={"team": "shop"})
    Volume.objects.create(name="secret_db", container_count=1)
    team = Team.objects.create(name="shop")
    teams.rule_add(team=team, kind="label", value="team=shop")
    operator = make_user(None, "shop-operator")
    TeamMembership.objects.create(team=team, user=operator, role="Operator")

    mine, everyone = health_figures(who=operator), health_figures()

    assert (mine.volumes, [p.volume for p in mine.unprotected_in_use]) == (1, ["shop_db"])
    assert (everyone.volumes, [p.volume for p in everyone.unprotected_in_use]) == (2, ["secret_db", "shop_db"])
