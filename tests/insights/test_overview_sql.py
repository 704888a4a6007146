"""The overview's figures counted in SQL (insights.selectors.overview, risk_counts) are the
figures the row-by-row rules give (mirror_rows, risk_groups, insights.risks): over a small
hand-made catalogue with every kind of finding and severity, several hosts and a team."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Team, TeamMembership, TeamRule
from backups.models import Backup
from hosts.models import Host
from insights import selectors
from insights.models import VolumeUsageSample
from insights.risks import (
    Finding,
    FindingGroup,
    RiskCount,
    count_groups,
    group_findings,
)
from jobs.models import Job
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def _backup(volume, *, finished_at, status="succeeded", origin="manual", missing=False):
    job = Job.objects.create(kind="backup", status=status, finished_at=finished_at, target=volume.name)
    return Backup.objects.create(job=job, volume=volume, volume_name=volume.name, origin=origin, key="k",
                                 missing=missing)


@pytest.fixture
def catalogue():
    """Every risk rule fires at least once, at each of its severities; gone rows do not count."""
    now = timezone.now()
    EngineStatus.objects.create(docker_root_dir="/var/lib/docker", last_success_at=now)  # the default host's
    v = {}
    for name, fields in {
        "db": {"size_bytes": 300 * MB, "labels": {"com.docker.compose.project": "shop"}},
        "old": {"size_bytes": 40 * MB},
        "keep": {"size_bytes": 5 * MB, "labels": {"cargohold.protect": " TRUE "}},
        "keep_not": {"size_bytes": 7 * MB, "labels": {"cargohold.protect": "no"}},
        "empty": {"size_bytes": 0},
        "unmeasured": {"size_bytes": None},
        "stale": {"size_bytes": 1 * MB},
        "fresh": {"size_bytes": 2 * MB},
        "week": {"size_bytes": 3 * MB},
        "a" * 64: {"anonymous": True, "size_bytes": 2 * MB},  # mounted: medium
        "b" * 64: {"anonymous": True, "size_bytes": 9 * MB},  # not mounted: high
        "c" * 64: {"anonymous": True, "size_bytes": 1000},  # too small to matter
        "gone": {"size_bytes": 999 * MB, "gone_since": now},
    }.items():
        v[name] = Volume.objects.create(name=name, **fields)
    c = {}
    for name, fields in {
        "writer1": {"compose_project": "shop"}, "writer2": {"size_rw": 300 * MB}, "reader": {},
        "anon_user": {}, "binder": {"state": "exited"}, "gone_ctr": {"gone_since": now},
    }.items():
        c[name] = Container.objects.create(engine_id=name.ljust(64, "0"), name=name, **fields)
    for ctr, vol, ro in (("writer1", "db", False), ("writer2", "db", False), ("reader", "db", True),
                         ("writer1", "fresh", False), ("reader", "fresh", True), ("anon_user", "a" * 64, False),
                         ("gone_ctr", "old", False), ("gone_ctr", "b" * 64, False), ("gone_ctr", "fresh", False)):
        Mount.objects.create(container=c[ctr], kind="volume", volume=v[vol], destination=f"/{vol[:8]}", read_only=ro)
    for ctr, source, ro in (("binder", "/", True), ("binder", "/etc", True), ("writer1", "/var/run/docker.sock", True),
                            ("binder", "/etc/localtime", True), ("reader", "/etc/localtime", True),
                            ("reader", "/srv/app", False), ("reader", "/var/lib/docker/volumes", False),
                            ("gone_ctr", "/", False)):
        Mount.objects.create(container=c[ctr], kind="bind", source=source, destination="/h" + source, read_only=ro)
    Mount.objects.create(container=c["binder"], kind="tmpfs", destination="/scratch")

    _backup(v["fresh"], finished_at=now - timedelta(hours=2))
    _backup(v["week"], finished_at=now - timedelta(days=3))
    _backup(v["stale"], finished_at=now - timedelta(days=30))
    _backup(v["db"], finished_at=now - timedelta(hours=1), origin="imported")  # not its backup
    _backup(v["old"], finished_at=now - timedelta(hours=1), missing=True)  # archive lost
    _backup(v["old"], finished_at=now - timedelta(minutes=5), status="failed")
    return {"volumes": v, "containers": c, "now": now}


def _summary(groups: list[FindingGroup]) -> list[RiskCount]:
    """What the overview showed before: each group's kind, severity and number of findings."""
    return [RiskCount(g.kind, g.severity, len(g.findings)) for g in groups]


def _reference_overview(rows: selectors.MirrorRows) -> dict:
    """The overview's figures as they were computed before, row by row."""
    used = {m.volume_id for m in rows.mounts if m.kind == "volume"}
    unused = [v for v in rows.volumes if v.id not in used]
    return {
        "volumes": len(rows.volumes),
        "named": sum(1 for v in rows.volumes if not v.anonymous),
        "anonymous": sum(1 for v in rows.volumes if v.anonymous),
        "total_bytes": sum(v.size_bytes or 0 for v in rows.volumes),
        "unmeasured": sum(1 for v in rows.volumes if v.size_bytes is None),
        "unused": len(unused),
        "unused_bytes": sum(v.size_bytes or 0 for v in unused),
        "unused_protected": sum(1 for v in unused if v.protected),
        "reclaimable_bytes": sum(v.size_bytes or 0 for v in unused if not v.protected),
        "largest": [v.name for v in sorted((v for v in rows.volumes if v.size_bytes),
                                           key=lambda v: (-v.size_bytes, v.name))[:8]],
    }


def _figures(o: selectors.Overview) -> dict:
    return {k: getattr(o, k) for k in ("volumes", "named", "anonymous", "total_bytes", "unmeasured", "unused",
                                       "unused_bytes", "unused_protected", "reclaimable_bytes")} | {
        "largest": [v.name for v in o.largest]}


def test_the_risk_summary_counts_what_the_rules_find(catalogue):
    now = catalogue["now"]
    engine = EngineStatus.of_default()

    counted = selectors.risk_counts(now=now, engine=engine)
    found = selectors.risk_groups(now=now, engine=engine)

    assert counted == _summary(found)
    assert {(r.kind.slug, r.severity, r.count) for r in counted} == {
        # /, /etc, the socket (read-only: still high), the data root's folder (rw); not /etc/localtime or /srv/app
        ("sensitive-bind", "high", 4),
        ("rw-shared", "high", 1),  # db: writer1 and writer2 (the gone container's mount is not counted)
        ("writable-layer", "medium", 1),
        ("anonymous-data", "high", 2),  # b… (its only user is gone) high, a… (mounted) medium
        # never: db (imported only), old (missing only), keep, keep_not, unmeasured, a…, b…, c… (high), empty (low);
        # stale: the 30-day-old one (medium)
        ("no-backup", "high", 10),
    }


def test_the_risk_summary_grades_each_kind_by_its_worst_finding_and_orders_like_the_risks_page():
    findings = [Finding("no-backup", "low", "volume", "x", ""), Finding("no-backup", "medium", "volume", "y", ""),
                Finding("writable-layer", "medium", "container", "z", ""),
                Finding("drill-failed", "high", "volume", "x", "")]
    counts = {}
    for f in findings:
        counts[(f.kind, f.severity)] = counts.get((f.kind, f.severity), 0) + 1

    assert count_groups(counts) == _summary(group_findings(findings))
    assert [(r.kind.slug, r.severity, r.count) for r in count_groups(counts)] == [
        ("drill-failed", "high", 1), ("writable-layer", "medium", 1), ("no-backup", "medium", 2)]
    assert count_groups({("no-backup", "low"): 0}) == []


def test_the_overview_figures_are_the_row_by_row_figures(catalogue):
    now = catalogue["now"]

    o = selectors.overview(now=now)

    assert _figures(o) == _reference_overview(selectors.mirror_rows())
    # By hand: unused are old (its only user is gone), keep (protected), keep_not, empty, unmeasured, stale,
    # week, b… and c…: 40 + 5 + 7 + 0 + 0 + 1 + 3 + 9 MB + 1000 bytes, keep not reclaimable.
    assert (o.volumes, o.named, o.anonymous, o.unused, o.unused_protected) == (12, 9, 3, 9, 1)
    assert o.unused_bytes == 65 * MB + 1000 and o.reclaimable_bytes == 60 * MB + 1000
    assert o.total_bytes == 369 * MB + 1000 and o.unmeasured == 1
    assert o.risks == _summary(selectors.risk_groups(now=now, engine=o.engine))


def test_backup_coverage_counts_the_protecting_backups_of_the_last_24h_and_7d(catalogue):
    now = catalogue["now"]

    o = selectors.overview(now=now)
    rows = selectors.mirror_rows()
    reference = selectors.backup_coverage(rows=rows, last=selectors.last_successful_backups(), now=now)

    assert (o.backups.volumes, o.backups.last_24h, o.backups.last_7d) == (12, 1, 2)  # fresh; fresh and week
    assert o.backups == reference


def test_no_backups_at_all_is_said_and_leaves_no_backup_findings_out_only_without_the_feature(catalogue, monkeypatch):
    Backup.objects.all().delete()
    o = selectors.overview(now=catalogue["now"])
    assert o.backups.any_backups is False and (o.backups.last_24h, o.backups.last_7d) == (0, 0)
    assert "no-backup" in {r.kind.slug for r in o.risks}  # the rule holds once the feature exists

    monkeypatch.setattr(selectors, "backup_model", lambda: None)
    o = selectors.overview(now=catalogue["now"])
    assert o.backups is None and "no-backup" not in {r.kind.slug for r in o.risks}
    assert o.risks == _summary(selectors.risk_groups(now=catalogue["now"], last=None, engine=o.engine))


def test_largest_volumes_break_ties_by_name_as_python_sorts_them():
    for name in ("b_x", "bx", "B", "a.z", "a-z", "az", "a_z", "zz", "small"):
        Volume.objects.create(name=name, size_bytes=10 * MB if name != "small" else MB)
    Volume.objects.create(name="zero", size_bytes=0)

    o = selectors.overview()

    assert [v.name for v in o.largest] == sorted(["b_x", "bx", "B", "a.z", "a-z", "az", "a_z", "zz"])
    assert [v.name for v in o.largest] == _reference_overview(selectors.mirror_rows())["largest"]


def test_growers_are_the_biggest_growth_first_ties_by_name_none_that_shrank():
    now = timezone.now()
    for name, then, size in (("b", 10, 30), ("a", 10, 30), ("c", 5, 40), ("shrank", 50, 40), ("flat", 7, 7),
                             ("unmeasured", 1, None)):
        v = Volume.objects.create(name=name, size_bytes=size * MB if size is not None else None, size_measured_at=now)
        VolumeUsageSample.objects.create(volume=v, at=now - timedelta(days=2), size_bytes=then * MB)
        VolumeUsageSample.objects.create(volume=v, at=now - timedelta(days=1), size_bytes=(then + 1) * MB)
    old = Volume.objects.create(name="outside", size_bytes=90 * MB, size_measured_at=now)
    VolumeUsageSample.objects.create(volume=old, at=now - timedelta(days=9), size_bytes=MB)  # before the window

    growers = selectors.largest_growers(now=now, limit=3)

    assert [(g.name, g.growth_bytes) for g in growers] == [("c", 35 * MB), ("a", 20 * MB), ("b", 20 * MB)]
    assert growers[0].per_day == pytest.approx(35 * MB / 2, rel=0.01)
    assert [g.name for g in selectors.largest_growers(now=now)] == ["c", "a", "b"]


def test_several_hosts_judge_binds_against_each_hosts_data_root(catalogue):
    now = catalogue["now"]
    e1 = Host.objects.create(name="e1")
    EngineStatus.objects.create(host=e1, docker_root_dir="/srv/docker")
    ctr = Container.objects.create(engine_id="e" * 64, name="e1-app", host=e1, state="running")
    vol = Volume.objects.create(name="e1:data", host=e1, size_bytes=MB)
    Mount.objects.create(container=ctr, kind="volume", volume=vol, destination="/data")
    Mount.objects.create(container=ctr, kind="bind", source="/srv/docker/volumes", destination="/x", read_only=True)
    Mount.objects.create(container=ctr, kind="bind", source="/var/lib/docker", destination="/y", read_only=True)
    engine = EngineStatus.of_default()

    counted = selectors.risk_counts(now=now, engine=engine)

    assert counted == _summary(selectors.risk_groups(now=now, engine=engine))
    # e1's data root counts on e1; the default host's data root is only an ordinary path there.
    assert {r.kind.slug: r.count for r in counted}["sensitive-bind"] == 5


def test_a_team_sees_the_figures_of_its_volumes_only(catalogue, make_user):
    now = catalogue["now"]
    shop = Team.objects.create(name="shop")
    TeamRule.objects.create(team=shop, kind="compose", value="shop")
    TeamRule.objects.create(team=shop, kind="label", value="cargohold.protect")
    user = make_user(None, "shop-viewer")
    TeamMembership.objects.create(team=shop, user=user, role="Viewer")

    o = selectors.overview(now=now, who=user)
    rows = selectors.mirror_rows(who=user)

    assert _figures(o) == _reference_overview(rows)
    assert {v.name for v in rows.volumes} >= {"db", "keep"} and o.volumes == len(rows.volumes) < 12
    assert o.risks == _summary(selectors.risk_groups(rows=rows, now=now, engine=o.engine))
    assert o.backups == selectors.backup_coverage(rows=rows, last=selectors.last_successful_backups(), now=now,
                                                  who=user)
