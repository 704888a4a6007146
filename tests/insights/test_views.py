"""Overview, graph, risks and usage views: permission, method, htmx fragments, figures."""

from datetime import timedelta

import pytest
from django.utils import timezone

from insights import selectors
from insights.models import VolumeUsageSample
from jobs.models import Job
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def mirror():
    """A small mirror: a Compose app with a shared writer, an unused volume, a root bind."""
    now = timezone.now()
    EngineStatus.objects.create(
        storage_driver="overlay2", docker_root_dir="/var/lib/docker", last_success_at=now,
        server_version="20.10.24", host_name="box", sizes_measured_at=now,
    )
    db = Volume.objects.create(name="shop_db", size_bytes=300 * MB, labels={"com.docker.compose.project": "shop"},
                               size_measured_at=now, last_seen_at=now)
    old = Volume.objects.create(name="old_stuff", size_bytes=40 * MB, last_seen_at=now)
    Volume.objects.create(name="keep_me", size_bytes=5 * MB, labels={"cargohold.protect": "true"})
    Volume.objects.create(name="f" * 64, anonymous=True, size_bytes=2 * MB)
    Volume.objects.create(name="gone_one", size_bytes=999 * MB, gone_since=now)
    a = Container.objects.create(engine_id="a" * 64, name="shop-db-1", state="running", compose_project="shop",
                                 compose_service="db", last_seen_at=now)
    b = Container.objects.create(engine_id="b" * 64, name="shop-worker-1", state="running", compose_project="shop",
                                 compose_service="worker", size_rw=300 * MB)
    c = Container.objects.create(engine_id="c" * 64, name="rooty", state="exited")
    Mount.objects.create(container=a, kind="volume", volume=db, destination="/var/lib/db")
    Mount.objects.create(container=b, kind="volume", volume=db, destination="/data")
    Mount.objects.create(container=c, kind="bind", source="/", destination="/host")
    Mount.objects.create(container=c, kind="tmpfs", destination="/scratch")
    return {"db": db, "old": old}


# --- overview ------------------------------------------------------------------------------


def test_overview_is_the_landing_page_with_the_figures(client_for, mirror):
    response = client_for("Viewer").get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" in page and 'id="overview"' in page
    assert "Volume space" in page and "347\xa0MiB" in page  # 300 + 40 + 5 + 2 MB; the gone one not counted
    # Unused: old_stuff, keep_me (protected, so not reclaimable) and the anonymous one.
    assert "42\xa0MiB" in page and "in 3 unused volumes (1 protected, not counted)" in page
    assert 'href="/volumes/prune/"' in page
    assert "3 / 1" in page  # named / anonymous
    assert "overlay2" in page and "/var/lib/docker" in page
    assert "No backups yet." in page
    assert "Volumes written by several containers" in page
    assert "Bind mounts of sensitive host paths" in page


def test_overview_htmx_poll_returns_only_the_figures(client_for, mirror):
    response = client_for("Viewer").get("/", **HTMX)

    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" not in page
    assert page.lstrip().startswith('<div id="overview"') and 'hx-trigger="every 15s"' in page


def test_overview_lists_the_last_failed_jobs(client_for, mirror):
    Job.objects.create(kind="backup", target="shop_db", status=Job.Status.FAILED, error="disk <full>",
                       finished_at=timezone.now())
    Job.objects.create(kind="backup", target="ok_vol", status=Job.Status.SUCCEEDED, finished_at=timezone.now())

    page = client_for("Viewer").get("/").content.decode()

    assert "disk &lt;full&gt;" in page and "shop_db" in page
    assert "ok_vol" not in page


def test_overview_lists_largest_volumes_and_growers(client_for, mirror):
    now = timezone.now()
    db = mirror["db"]
    VolumeUsageSample.objects.create(volume=db, at=now - timedelta(days=2), size_bytes=100 * MB)
    VolumeUsageSample.objects.create(volume=mirror["old"], at=now - timedelta(days=2), size_bytes=40 * MB)

    overview = selectors.overview(now=now)
    page = client_for("Viewer").get("/").content.decode()

    assert [v.name for v in overview.largest][:2] == ["shop_db", "old_stuff"]
    assert [g.name for g in overview.growers] == ["shop_db"]  # old_stuff did not grow
    assert overview.growers[0].growth_bytes == 200 * MB
    assert overview.growers[0].per_day == pytest.approx(100 * MB, rel=0.01)
    assert "+200\xa0MiB" in page


@pytest.mark.parametrize("url", ["/", "/graph/", "/risks/", "/insights/volumes/shop_db/usage/"])
def test_pages_refuse_a_user_without_a_role(client_for, mirror, url):
    from accounts.models import AuditEvent

    response = client_for(None).get(url)

    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="permission_denied", result="denied").exists()


@pytest.mark.parametrize("url", ["/", "/graph/", "/risks/", "/insights/volumes/shop_db/usage/"])
def test_pages_are_read_only(client_for, mirror, url):
    assert client_for("Admin").post(url).status_code == 405


@pytest.mark.parametrize("url", ["/", "/graph/", "/risks/"])
def test_pages_need_a_login(client, url):
    response = client.get(url)

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- graph -----------------------------------------------------------------------------------


def test_graph_page_draws_nodes_with_links(client_for, mirror):
    response = client_for("Viewer").get("/graph/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "<svg" in page and 'class="sharing-graph"' in page
    assert 'data-node="volume:shop_db"' in page and 'href="/volumes/shop_db/"' in page
    assert 'data-node="container:shop-db-1"' in page and 'href="/containers/?q=shop-db-1"' in page
    assert "g-rw-shared" in page and "g-unused" in page
    assert "bind / → /host rw" in page
    assert "gone_one" not in page
    assert '<option value="shop"' in page


def test_graph_project_filter(client_for, mirror):
    page = client_for("Viewer").get("/graph/", {"project": "-"}).content.decode()

    assert 'data-node="container:rooty"' in page
    assert 'data-node="container:shop-db-1"' not in page


def test_graph_poll_is_204_while_the_mirror_is_unchanged_and_redraws_after_a_change(client_for, mirror):
    client = client_for("Viewer")
    version = selectors.mirror_version()

    unchanged = client.get("/graph/", {"v": version}, **HTMX)
    Volume.objects.create(name="brand_new", last_seen_at=timezone.now())
    changed = client.get("/graph/", {"v": version}, **HTMX)

    assert unchanged.status_code == 204
    assert changed.status_code == 200
    fragment = changed.content.decode()
    assert "<html" not in fragment and 'data-node="volume:brand_new"' in fragment
    assert f"v={selectors.mirror_version()}" in fragment and version not in fragment


def test_container_neighbourhood_in_the_graph(client_for, mirror):
    page = client_for("Viewer").get("/graph/", {"container": "shop-db-1"}).content.decode()

    assert "Neighbourhood of container shop-db-1" in page
    assert 'data-node="volume:shop_db"' in page and 'data-node="container:shop-worker-1"' in page
    assert 'data-node="volume:old_stuff"' not in page and 'data-node="container:rooty"' not in page


# --- volume page: usage history and neighbourhood ---------------------------------------------------


def test_volume_page_shows_size_history_and_neighbourhood(client_for, mirror):
    now = timezone.now()
    for hours, size in [(20, 100 * MB), (10, 150 * MB), (1, 200 * MB)]:
        VolumeUsageSample.objects.create(volume=mirror["db"], at=now - timedelta(hours=hours), size_bytes=size)

    page = client_for("Viewer").get("/volumes/shop_db/").content.decode()

    assert 'class="usage-chart"' in page and "<polyline" in page
    assert "+100\xa0MiB" in page and "per day" in page  # 100 MB over 19 h
    assert "Neighbourhood" in page
    assert 'data-node="container:shop-worker-1"' in page and 'data-node="volume:old_stuff"' not in page


def test_usage_fragment_switches_range(client_for, mirror):
    now = timezone.now()
    VolumeUsageSample.objects.create(volume=mirror["db"], at=now - timedelta(days=5), size_bytes=10 * MB)
    VolumeUsageSample.objects.create(volume=mirror["db"], at=now - timedelta(hours=2), size_bytes=20 * MB)
    client = client_for("Viewer")

    day = client.get("/insights/volumes/shop_db/usage/", {"range": "day"}, **HTMX).content.decode()
    week = client.get("/insights/volumes/shop_db/usage/", {"range": "week"}, **HTMX).content.decode()

    assert "Not enough samples" in day and "1 so far" in day
    assert "+10\xa0MiB" in week and "2 samples" in week
    assert 'class="current" aria-current="true">Week<' in week


def test_usage_fragment_of_an_unknown_volume_is_404(client_for, mirror):
    assert client_for("Viewer").get("/insights/volumes/nope/usage/").status_code == 404


def test_usage_fragment_ignores_a_bad_range(client_for, mirror):
    page = client_for("Viewer").get("/insights/volumes/shop_db/usage/", {"range": "<script>"}).content.decode()

    assert 'aria-current="true">Last day<' in page and "<script>" not in page


# --- risks -----------------------------------------------------------------------------------------


def test_risks_page_explains_each_finding(client_for, mirror, monkeypatch):
    monkeypatch.setattr(selectors, "last_successful_backups", lambda: None)  # no backup feature

    page = client_for("Viewer").get("/risks/").content.decode()

    assert 'data-kind="sensitive-bind"' in page and "rooty" in page and "whole filesystem" in page
    assert 'data-kind="rw-shared"' in page and "Written by 2 containers: shop-db-1, shop-worker-1." in page
    assert 'data-kind="writable-layer"' in page and "shop-worker-1" in page
    assert 'data-kind="anonymous-data"' in page
    assert "Why it matters." in page and "What to do." in page
    assert 'data-kind="no-backup"' not in page
    assert "Backup coverage is not checked" in page


def test_risks_page_lists_volumes_without_a_recent_backup_once_backups_exist(client_for, mirror, monkeypatch):
    monkeypatch.setattr(selectors, "last_successful_backups", lambda: {mirror["db"].pk: timezone.now()})

    page = client_for("Viewer").get("/risks/").content.decode()

    section = page[page.index('data-kind="no-backup"'):]
    section = section[: section.index("</section>")]
    assert 'data-subject="old_stuff"' in section and "Never backed up" in section
    assert 'data-subject="shop_db"' not in section


@pytest.fixture
def many_anonymous(mirror):
    """25 more anonymous volumes holding data, unused: the anonymous-data group has 26."""
    for i in range(25):
        Volume.objects.create(name=f"{i:064x}", anonymous=True, size_bytes=5 * MB)


def _group(page: str, slug: str) -> str:
    section = page[page.index(f'data-kind="{slug}"'):]
    return section[: section.index("</section>")]


def test_a_large_risk_group_sends_its_first_ten_and_the_rest_when_opened(client_for, many_anonymous, monkeypatch):
    monkeypatch.setattr(selectors, "last_successful_backups", lambda: None)
    client = client_for("Viewer")

    group = _group(client.get("/risks/").content.decode(), "anonymous-data")
    assert group.count("data-subject=") == 10 and "Show 16 more" in group
    assert 'hx-get="/risks/?more=anonymous-data" hx-trigger="toggle once"' in group

    rest = client.get("/risks/", {"more": "anonymous-data"}, **HTMX).content.decode()
    assert rest.count("data-subject=") == 16 and "<html" not in rest and "<section" not in rest
    gone = client.get("/risks/", {"more": "no-such-kind"}, **HTMX).content.decode()
    assert "data-subject=" not in gone and "No findings of this kind any more" in gone
    # Without script the link opens the group on the page itself.
    group = _group(client.get("/risks/", {"more": "anonymous-data"}).content.decode(), "anonymous-data")
    assert group.count("data-subject=") == 26 and "<details open>" in group


def test_the_rest_of_a_risk_group_needs_the_role(client, many_anonymous):
    response = client.get("/risks/", {"more": "anonymous-data"}, **HTMX)
    assert response.status_code in (302, 403) and b"data-subject" not in response.content


def test_without_a_backup_model_coverage_degrades_to_no_backups_yet(client_for, mirror, monkeypatch):
    get_model = selectors.apps.get_model

    def without_backup(app_label, model_name=None, **kwargs):
        if (app_label, model_name) == ("backups", "Backup"):
            raise LookupError(model_name)
        return get_model(app_label, model_name, **kwargs)

    monkeypatch.setattr(selectors.apps, "get_model", without_backup)

    assert selectors.backup_model() is None
    assert selectors.last_successful_backups() is None
    assert "No backups yet." in client_for("Viewer").get("/").content.decode()


def _backup(model, *, status, finished_at, origin="manual", **fields):
    """A Backup row with its job (the row reads its status and end through the job)."""
    job = Job.objects.create(kind="backup", status=status, finished_at=finished_at)
    return model.objects.create(job=job, origin=origin, **fields)


def test_backup_coverage_and_findings_from_the_backups_app(client_for, mirror):
    model = selectors.backup_model()
    assert model is not None  # the backups app is installed: coverage must be checked
    now = timezone.now()
    _backup(model, volume=mirror["db"], volume_name="shop_db", status="succeeded",
            finished_at=now - timedelta(hours=2), key="k1")
    _backup(model, volume=mirror["old"], volume_name="old_stuff", status="failed", finished_at=now)
    _backup(model, volume=mirror["old"], volume_name="old_stuff", status="succeeded",
            finished_at=now - timedelta(days=3), key="k2", missing=True)

    overview = client_for("Viewer").get("/").content.decode()
    risks = client_for("Viewer").get("/risks/").content.decode()

    assert "Backed up in the last 24 h</dt><dd>1 of 4 volumes" in overview
    assert "Backed up in the last 7 days</dt><dd>1 of 4 volumes" in overview  # the missing archive counts for nothing
    section = risks[risks.index('data-kind="no-backup"'):]
    assert 'data-subject="old_stuff"' in section and 'data-subject="shop_db"' not in section


def test_an_imported_archive_under_a_volumes_name_is_not_that_volumes_backup(client_for, mirror):
    model = selectors.backup_model()
    now = timezone.now()
    _backup(model, volume=mirror["db"], volume_name="shop_db", status="succeeded",
            finished_at=now - timedelta(hours=2), key="k1")
    _backup(model, volume=mirror["old"], volume_name="old_stuff", status="succeeded", origin="imported",
            finished_at=now - timedelta(minutes=5), key="k2")

    assert set(selectors.last_successful_backups()) == {mirror["db"].pk}
    overview = client_for("Viewer").get("/").content.decode()
    risks = client_for("Viewer").get("/risks/").content.decode()

    assert "Backed up in the last 24 h</dt><dd>1 of 4 volumes" in overview
    section = risks[risks.index('data-kind="no-backup"'):]
    section = section[: section.index("</section>")]
    assert 'data-subject="old_stuff"' in section and "Never backed up" in section


def test_backup_coverage_counts_volumes_backed_up_in_24h_and_7d(monkeypatch, mirror):
    class FakeBackup:
        class objects:
            @staticmethod
            def exists():
                return True

    monkeypatch.setattr(selectors, "backup_model", lambda: FakeBackup)
    now = timezone.now()
    rows = selectors.mirror_rows()
    ids = {v.name: v.id for v in rows.volumes}
    last = {ids["shop_db"]: now - timedelta(hours=2), ids["old_stuff"]: now - timedelta(days=3),
            ids["keep_me"]: now - timedelta(days=30)}

    coverage = selectors.backup_coverage(rows=rows, last=last, now=now)

    assert (coverage.volumes, coverage.last_24h, coverage.last_7d) == (4, 1, 2)
    assert coverage.any_backups
