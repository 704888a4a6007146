"""The audit trail page (/audit/) and the trail's immutability from the UI and the admin."""

from datetime import datetime, timezone

import pytest
from django.contrib.auth import get_user_model

from accounts.models import AuditEvent
from accounts.services import audit_record

pytestmark = pytest.mark.django_db


def _event(action="volume_create", actor_name="alice", object_name="shop_db", result="ok", at=None, **kwargs):
    event = audit_record(action=action, actor_name=actor_name, object_type="volume", object_name=object_name,
                         result=result, **kwargs)
    if at is not None:  # backdate through the table (the model refuses updates on purpose)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET at = %s WHERE id = %s", [at, event.pk])
    return event


def test_admins_read_the_trail_newest_first_with_who_what_and_result(client_for):
    _event(action="volume_create", object_name="first", params={"driver": "local"})
    _event(action="volume_remove", object_name="second", result="error", error="Volume second is used by 1 container")

    html = client_for("Admin").get("/audit/").content.decode()

    assert html.index("second") < html.index("first")
    assert "alice" in html and "volume_remove" in html and "driver=local" in html
    assert "Volume second is used by 1 container" in html


@pytest.mark.parametrize("role", ["Viewer", "Operator"])
def test_viewers_and_operators_get_403_and_the_denial_is_recorded(client_for, role):
    response = client_for(role).get("/audit/")
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="permission_denied", result="denied").exists()


def test_anonymous_is_sent_to_login(client):
    response = client.get("/audit/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_page_offers_no_way_to_change_the_trail(client_for):
    event = _event()
    admin = client_for("Admin")
    for method in ("post", "put", "patch", "delete"):
        assert getattr(admin, method)("/audit/", {"id": event.pk}).status_code == 405
    assert AuditEvent.objects.get(pk=event.pk).action == "volume_create"


@pytest.mark.parametrize(
    "query, shown, hidden",
    [
        ({"user": "ALI"}, ["by-alice"], ["by-bob"]),
        ({"action": "volume_remove"}, ["by-bob"], ["by-alice"]),
        ({"object": "by-b"}, ["by-bob"], ["by-alice"]),
        ({"result": "error"}, ["by-bob"], ["by-alice"]),
        ({"from": "2031-01-02"}, ["by-bob"], ["by-alice"]),
        ({"to": "2031-01-01"}, ["by-alice"], ["by-bob"]),
        ({"from": "2031-01-01", "to": "2031-01-01"}, ["by-alice"], ["by-bob"]),
        ({"from": "not-a-date"}, ["by-alice", "by-bob"], []),
    ],
)
def test_filters_by_user_action_object_result_and_utc_date(client_for, query, shown, hidden):
    _event(actor_name="alice", object_name="by-alice", at=datetime(2031, 1, 1, 23, 59, tzinfo=timezone.utc))
    _event(actor_name="bob", action="volume_remove", object_name="by-bob", result="error",
           at=datetime(2031, 1, 2, 0, 1, tzinfo=timezone.utc))

    html = client_for("Admin").get("/audit/", query, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in html
    for name in shown:
        assert name in html
    for name in hidden:
        assert name not in html


def test_pages_of_fifty_keep_the_filters_in_the_links(client_for):
    for i in range(60):
        _event(object_name=f"vol-{i:03d}")
    admin = client_for("Admin")

    first = admin.get("/audit/", {"action": "volume_create"}).content.decode()
    second = admin.get("/audit/", {"action": "volume_create", "page": "2"}).content.decode()

    assert "vol-059" in first and "vol-000" not in first
    assert "vol-000" in second and "vol-059" not in second
    assert "action=volume_create&amp;page=2" in first
    assert "Page 2 of 2" in second


def test_the_admin_site_shows_events_read_only(client):
    superuser = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client.force_login(superuser)
    event = _event()
    url = f"/admin/accounts/auditevent/{event.pk}/"

    assert client.get("/admin/accounts/auditevent/").status_code == 200
    assert client.get("/admin/accounts/auditevent/add/").status_code == 403
    assert client.post(f"{url}change/", {"action": "tampered"}).status_code == 403
    assert client.get(f"{url}delete/").status_code == 403
    assert client.post(f"{url}delete/", {"post": "yes"}).status_code == 403
    client.post("/admin/accounts/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk],
                                                "post": "yes"})

    assert AuditEvent.objects.get(pk=event.pk).action == "volume_create"


def test_actions_and_denials_of_the_lifecycle_pages_land_in_the_trail(client_for):
    client_for("Operator").get("/volumes/new/")
    html = client_for("Admin").get("/audit/", {"action": "permission_denied"}).content.decode()
    assert "(new volume)" in html and "permission_denied" in html
