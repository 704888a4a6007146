"""Inventory pages: permissions, htmx partials, filters, escaping, the engine banner."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirror():
    EngineStatus.objects.create(last_success_at=timezone.now(), host_name="host-1")
    db = Volume.objects.create(name="shop_db", labels={"com.docker.compose.project": "shop"}, size_bytes=5_000_000,
                               container_count=1, search_text="shop_db com.docker.compose.project=shop")
    Volume.objects.create(name="a" * 64, anonymous=True, size_bytes=10, search_text="a" * 64)
    Volume.objects.create(name="old", gone_since=timezone.now(), search_text="old")
    c = Container.objects.create(engine_id="c" * 64, name="shop-db-1", state="running", compose_project="shop")
    Mount.objects.create(container=c, kind="volume", volume=db, source="shop_db", destination="/var/lib/db")
    Mount.objects.create(container=c, kind="bind", source="/etc/shop", destination="/etc/shop", read_only=True)
    Mount.objects.create(container=c, kind="tmpfs", source="", destination="/tmp")
    return db


URLS = ["/volumes/", "/volumes/shop_db/", "/containers/"]


@pytest.mark.parametrize("url", URLS)
def test_anonymous_users_are_sent_to_login(client, mirror, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("role", ["Viewer", "Operator", "Admin"])
def test_every_role_can_read_the_inventory(client_for, mirror, url, role):
    assert client_for(role).get(url).status_code == 200


@pytest.mark.parametrize("url", URLS)
def test_user_without_role_gets_403_and_the_denial_is_audited(client_for, mirror, url):
    response = client_for(None).get(url)
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="permission_denied", result="denied").exists()


@pytest.mark.parametrize("url", URLS)
def test_inventory_pages_refuse_post(client_for, mirror, url):
    assert client_for("Admin").post(url).status_code == 405


def test_volume_list_shows_present_volumes_with_size_and_usage(client_for, mirror):
    html = client_for("Viewer").get("/volumes/").content.decode()
    assert "shop_db" in html and "4.8\xa0MiB" in html and "1 container" in html
    assert "anonymous" in html
    assert ">old<" not in html


def test_volume_list_filters_by_text_usage_and_kind(client_for, mirror):
    c = client_for("Viewer")
    assert "shop_db" in c.get("/volumes/?q=project=shop").content.decode()
    assert "shop_db" not in c.get("/volumes/?usage=unused").content.decode()
    unused_anon = c.get("/volumes/?usage=unused&kind=anonymous").content.decode()
    assert "a" * 40 in unused_anon and "shop_db" not in unused_anon
    assert ">old<" in c.get("/volumes/?gone=1").content.decode()


def test_volume_list_sorts_by_size(client_for, mirror):
    html = client_for("Viewer").get("/volumes/?sort=-size").content.decode()
    assert html.index("shop_db") < html.index("a" * 40)
    html = client_for("Viewer").get("/volumes/?sort=size").content.decode()
    assert html.index("shop_db") > html.index("a" * 40)


def test_htmx_request_gets_only_the_table_partial(client_for, mirror):
    response = client_for("Viewer").get("/volumes/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'id="volume-table"' in html
    assert "<html" not in html and "<form" not in html


def test_volume_list_paginates(client_for, mirror):
    Volume.objects.bulk_create(Volume(name=f"bulk-{i:04d}", search_text=f"bulk-{i:04d}") for i in range(120))
    html = client_for("Viewer").get("/volumes/?page=2").content.decode()
    assert "Page 2 of 3" in html


def test_volume_detail_lists_options_labels_and_mounting_containers(client_for, mirror):
    mirror.options = {"type": "nfs", "o": "addr=10.0.0.1,rw"}
    mirror.save()
    html = client_for("Viewer").get("/volumes/shop_db/").content.decode()
    assert "addr=10.0.0.1,rw" in html
    assert "com.docker.compose.project" in html
    assert "shop-db-1" in html and "/var/lib/db" in html and "read-write" in html


def test_unknown_volume_is_404(client_for, mirror):
    assert client_for("Viewer").get("/volumes/nope/").status_code == 404


def test_containers_page_shows_volume_bind_and_tmpfs_mounts(client_for, mirror):
    html = client_for("Viewer").get("/containers/").content.decode()
    for text in ("shop-db-1", "/var/lib/db", "/etc/shop", "badge-bind", "badge-tmpfs", ">ro<"):
        assert text in html


def test_odd_names_and_labels_are_escaped(client_for, mirror):
    Volume.objects.create(name="evil", labels={"x": "<script>alert(1)</script>", "q\"uote": "ünï"},
                          search_text="evil")
    html = client_for("Viewer").get("/volumes/evil/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "ünï" in html


def test_banner_shows_last_successful_sync_when_engine_fails(client_for, mirror):
    status = EngineStatus.get()
    status.last_error = "Listing volumes: the Docker Engine did not answer (connection refused)."
    status.save()
    html = client_for("Viewer").get("/volumes/").content.decode()
    assert "Docker Engine unreachable" in html
    assert "connection refused" in html
    assert status.last_success_at.strftime("%Y-%m-%d %H:%M") in html
    assert "shop_db" in html  # the mirror still renders


def test_banner_warns_when_no_sync_succeeded_recently(client_for, mirror):
    EngineStatus.objects.update(last_success_at=timezone.now() - timedelta(hours=1))
    assert "is a Cargohold worker running" in client_for("Viewer").get("/volumes/").content.decode()


def test_no_banner_when_sync_is_fresh(client_for, mirror):
    assert "Docker Engine unreachable" not in client_for("Viewer").get("/volumes/").content.decode()


def test_htmx_refresh_carries_the_engine_banner_out_of_band(client_for, mirror):
    EngineStatus.objects.update(last_error="Listing volumes: the Docker Engine did not answer.")
    html = client_for("Viewer").get("/volumes/", headers={"HX-Request": "true"}).content.decode()
    assert 'id="engine-banner" hx-swap-oob="true"' in html
    assert "did not answer" in html
