"""Each permission edge of the API: the same roles, team scoping, audit and errors as the pages."""

import pytest

from accounts.models import AuditEvent
from backups.models import Backup
from jobs.models import Job
from tests.api.conftest import backup_row, mirror_volume

pytestmark = pytest.mark.django_db


def _post(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


def test_viewer_token_cannot_start_a_backup(api_for):
    mirror_volume("shop-db")
    client = api_for("Viewer")
    response = _post(client, "/api/v1/backups/", {"volume": "shop-db"})
    assert response.status_code == 403
    assert response.json()["error"].startswith("Your role does not allow this")
    assert not Job.objects.exists()
    denied = AuditEvent.objects.get(action="permission_denied")
    assert denied.actor == client.user and denied.params["method"] == "POST"


def test_operator_token_starts_a_backup_and_it_is_audited(api_for, monkeypatch):
    from jobs import tasks

    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *a, **k: None)  # this test runs no worker
    mirror_volume("shop-db")
    client = api_for("Operator")
    response = _post(client, "/api/v1/backups/", {"volume": "shop-db", "compression": "gzip"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["backup"]["volume_name"] == "shop-db" and body["job"]["status"] == "queued"
    assert body["job"]["url"] == f"/api/v1/jobs/{body['job']['id']}/"
    event = AuditEvent.objects.get(action="backup_start")
    assert event.actor == client.user and event.object_name == "shop-db" and event.params["compression"] == "gzip"


def test_unknown_volume_answers_404_json(api_for):
    response = _post(api_for("Operator"), "/api/v1/backups/", {"volume": "no-such-volume"})
    assert response.status_code == 404 and "No such volume" in response.json()["error"]


def test_invalid_input_names_the_field(api_for):
    mirror_volume("v1")
    response = _post(api_for("Operator"), "/api/v1/backups/", {"volume": "v1", "compression": "lz4"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid input: compression:")
    assert "compression" in response.json()["detail"]


def test_refusal_answers_409_with_the_services_message(api_for):
    backup = backup_row(volume_name="v1", status="failed")
    response = _post(api_for("Operator"), f"/api/v1/backups/{backup.pk}/verify/")
    assert response.status_code == 409 and "no stored archive" in response.json()["error"]


@pytest.mark.parametrize("role, method, url, status", [
    ("Viewer", "get", "/api/v1/backups/{id}/download/", 403),
    ("Viewer", "post", "/api/v1/backups/{id}/verify/", 403),
    ("Operator", "delete", "/api/v1/backups/{id}/", 403),
    ("Operator", "post", "/api/v1/backups/{id}/restore-in-place/", 403),
    ("Viewer", "post", "/api/v1/backups/{id}/restore/", 403),
    ("Viewer", "get", "/api/v1/audit/", 403),
    ("Operator", "get", "/api/v1/audit/", 403),
    ("Admin", "get", "/api/v1/audit/", 200),
    ("Viewer", "get", "/api/v1/backups/{id}/", 200),
    (None, "get", "/api/v1/backups/", 403),
])
def test_role_edges(api_for, role, method, url, status):
    backup = backup_row(volume_name="v1", status="failed")
    client = api_for(role)
    response = getattr(client, method)(url.format(id=backup.pk), content_type="application/json")
    assert response.status_code == status, response.content
    if status == 403:
        assert AuditEvent.objects.filter(action="permission_denied", actor=client.user).exists()
        assert Backup.objects.count() == 1 and Job.objects.count() == 1


def test_job_cancel_by_another_user_needs_the_kinds_role(api_for, make_user):
    starter = make_user("Operator")
    backup = backup_row(volume_name="v1", status="queued", created_by=starter)
    assert _post(api_for("Viewer"), f"/api/v1/jobs/{backup.job_id}/cancel/").status_code == 403
    assert Backup.objects.get(pk=backup.pk).status == "queued"
    response = _post(api_for("Operator"), f"/api/v1/jobs/{backup.job_id}/cancel/")  # a backup's: run_backup
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_the_starter_cancels_a_queued_job(api_for):
    client = api_for("Operator")
    backup = backup_row(volume_name="v1", status="queued", created_by=client.user)
    response = _post(client, f"/api/v1/jobs/{backup.job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert AuditEvent.objects.filter(action="job_cancel", actor=client.user).exists()


def test_another_teams_objects_answer_404_and_stay_out_of_lists(api_for, make_user):
    from accounts.models import Team, TeamMembership, TeamRule

    mirror_volume("shop-db", labels={"team": "shop"})
    mirror_volume("blog-db", labels={"team": "blog"})
    shop, blog = Team.objects.create(name="shop"), Team.objects.create(name="blog")
    TeamRule.objects.create(team=shop, kind="label", value="team=shop")
    TeamRule.objects.create(team=blog, kind="label", value="team=blog")
    theirs = backup_row(volume_name="blog-db", status="failed")
    ours = backup_row(volume_name="shop-db", status="failed")
    user = make_user(None)
    TeamMembership.objects.create(team=shop, user=user, role="Operator")
    client = api_for(user=user)
    assert client.get(f"/api/v1/backups/{theirs.pk}/").status_code == 404
    assert client.get(f"/api/v1/backups/{ours.pk}/").status_code == 200
    assert client.get("/api/v1/volumes/blog-db/").status_code == 404
    assert _post(client, "/api/v1/backups/", {"volume": "blog-db"}).status_code == 404
    assert [b["id"] for b in client.get("/api/v1/backups/").json()["results"]] == [ours.pk]
    assert [v["name"] for v in client.get("/api/v1/volumes/").json()["results"]] == ["shop-db"]
    assert client.get(f"/api/v1/jobs/{theirs.job_id}/").status_code == 404
    assert not Job.objects.filter(kind="backup", status="queued").exists()


def test_session_auth_works_for_the_browsable_api_and_checks_csrf(make_user):
    from django.test import Client

    mirror_volume("v1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("Operator"))
    page = client.get("/api/v1/volumes/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"v1" in page.content
    response = client.post("/api/v1/backups/", {"volume": "v1"}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    assert not Job.objects.exists()


def test_schema_and_docs(api_for, client_for):
    schema = api_for("Viewer").get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/backups/{backup_id}/download/" in paths and "/api/v1/jobs/{job_id}/cancel/" in paths
    docs = client_for("Viewer").get("/api/docs/")
    assert docs.status_code == 200 and b"/static/drf_spectacular_sidecar/" in docs.content
