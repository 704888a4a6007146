"""GET /api/v1/backups/<id>/files/: a folder of the backup's file index, or a search;
the permission and team scoping of the backup's detail."""

import pytest

from accounts.models import Team, TeamMembership, TeamRule
from backups.models import Backup
from tests.api.conftest import backup_row, mirror_volume
from tests.backups.test_files import entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup():
    b = backup_row(volume=mirror_volume("shop_db"), volume_name="shop_db", status=Backup.Status.SUCCEEDED, key="k")
    entry(b, "app", "d")
    entry(b, "app/config.yml", size=2048, mtime=1714559000.0)
    entry(b, "app/Cache", "d")
    entry(b, "README", size=7)
    return b


def test_lists_a_folder_folders_first(api_for, backup):
    response = api_for("Viewer").get(f"/api/v1/backups/{backup.pk}/files/?path=app")

    data = response.json()
    assert response.status_code == 200
    assert [e["path"] for e in data["results"]] == ["app/Cache", "app/config.yml"]
    assert data["count"] == 2 and data["indexed"] is True and data["path"] == "app"
    config = data["results"][1]
    assert config["size"] == 2048 and config["mode_text"] == "-rw-r--r--" and config["kind"] == "f"
    assert config["modified_at"].startswith("2024-05-01T10:23:20")


def test_searches_by_name_case_insensitively(api_for, backup):
    data = api_for("Viewer").get(f"/api/v1/backups/{backup.pk}/files/?q=CONFIG").json()

    assert [e["path"] for e in data["results"]] == ["app/config.yml"] and data["query"] == "CONFIG"


def test_pages(api_for, backup):
    data = api_for("Viewer").get(f"/api/v1/backups/{backup.pk}/files/?page_size=1&page=2").json()

    assert data["count"] == 2 and [e["path"] for e in data["results"]] == ["README"]
    assert data["next"] is None and "page_size=1" in data["previous"]


def test_bad_and_unknown_paths(api_for, backup):
    client = api_for("Viewer")

    bad = client.get(f"/api/v1/backups/{backup.pk}/files/?path=../etc")
    unknown = client.get(f"/api/v1/backups/{backup.pk}/files/?path=nope")
    a_file = client.get(f"/api/v1/backups/{backup.pk}/files/?path=README")

    assert bad.status_code == 400 and "path" in bad.json()["error"]
    assert unknown.status_code == 404 and "not a folder in this backup" in unknown.json()["error"]
    assert a_file.status_code == 404


def test_a_backup_without_index_says_so(api_for):
    old = backup_row(volume_name="shop_db", status=Backup.Status.SUCCEEDED, key="k")

    data = api_for("Viewer").get(f"/api/v1/backups/{old.pk}/files/").json()

    assert data["indexed"] is False and data["results"] == []


def test_needs_a_role_and_hides_other_teams_backups(api_for, make_user, backup, token_for):
    from django.test import Client

    assert api_for(None).get(f"/api/v1/backups/{backup.pk}/files/").status_code == 403
    assert Client().get(f"/api/v1/backups/{backup.pk}/files/").status_code == 401
    team = Team.objects.create(name="blog")
    TeamRule.objects.create(team=team, kind="label", value="team=blog")
    member = make_user(None, "blog-viewer")
    TeamMembership.objects.create(team=team, user=member, role="Viewer")
    _, raw = token_for(user=member)

    response = Client(headers={"Authorization": f"Bearer {raw}"}).get(f"/api/v1/backups/{backup.pk}/files/")

    assert response.status_code == 404


def test_the_schema_documents_it(api_for):
    schema = api_for("Viewer").get("/api/schema/?format=json").json()

    operation = schema["paths"]["/api/v1/backups/{backup_id}/files/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"path", "q", "page"}
