"""Per-user API tokens: shown once, stored hashed, expiring, revocable, read-only, audited."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from api.models import ApiToken

pytestmark = pytest.mark.django_db


def test_token_page_shows_the_token_once_and_stores_only_its_hash(client_for):
    client = client_for("Viewer")
    response = client.post("/accounts/tokens/", {"name": "ci nightly", "days": "30"})
    assert response.status_code == 200
    raw = response.context["raw"]
    assert raw.startswith("chk_") and raw in response.content.decode()
    token = ApiToken.objects.get(name="ci nightly")
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in (token.prefix, token.digest) and len(token.prefix) < len(raw) // 3
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    again = client.get("/accounts/tokens/")
    assert raw not in again.content.decode() and "ci nightly" in again.content.decode()
    event = AuditEvent.objects.get(action="api_token_create")
    assert event.actor == token.user and raw not in str(event.params)


def test_token_page_refuses_a_bad_lifetime_and_makes_nothing(client_for):
    response = client_for("Viewer").post("/accounts/tokens/", {"name": "x", "days": "100000"})
    assert response.status_code == 400 and "At most" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_token_authenticates_as_its_user(api_for):
    response = api_for("Viewer").get("/api/v1/volumes/")
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert ApiToken.objects.get().last_used_at is not None


def test_no_credentials_answer_401_json_with_a_hint():
    from django.test import Client

    response = Client().get("/api/v1/volumes/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "/accounts/tokens/" in response.json()["error"]


def test_unknown_token_answers_401():
    from django.test import Client

    response = Client(headers={"Authorization": "Bearer chk_not-a-real-token"}).get("/api/v1/volumes/")
    assert response.status_code == 401 and "not known" in response.json()["error"]


def test_expired_token_answers_401(token_for):
    from django.test import Client

    user, raw = token_for("Admin")
    ApiToken.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/v1/volumes/")
    assert response.status_code == 401 and "expired" in response.json()["error"]


def test_revoked_token_answers_401_and_the_revocation_is_audited(token_for):
    from django.test import Client

    user, raw = token_for("Admin")
    page = Client()
    page.force_login(user)
    token = ApiToken.objects.get(user=user)
    assert page.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 302
    response = Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/v1/volumes/")
    assert response.status_code == 401 and "revoked" in response.json()["error"]
    assert AuditEvent.objects.filter(action="api_token_revoke", actor=user).exists()


def test_nobody_revokes_another_users_token(token_for, client_for):
    owner, _ = token_for("Viewer")
    token = ApiToken.objects.get(user=owner)
    assert client_for("Admin").post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_read_only_token_cannot_post(api_for):
    from backups.models import Backup
    from tests.api.conftest import mirror_volume

    mirror_volume("ro-vol")
    response = api_for("Operator", read_only=True).post(
        "/api/v1/backups/", {"volume": "ro-vol"}, content_type="application/json")
    assert response.status_code == 403 and "read-only" in response.json()["error"]
    assert not Backup.objects.exists()


def test_read_only_token_still_reads(api_for):
    assert api_for("Operator", read_only=True).get("/api/v1/backups/").status_code == 200


def test_token_page_needs_a_login():
    from django.test import Client

    assert Client().get("/accounts/tokens/").status_code == 302
