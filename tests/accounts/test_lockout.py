"""Login throttling (django-axes): per account and per address, lockouts in the audit trail,
an Admin lifts them from /accounts/lockouts/ or with `manage.py axes_reset_username`."""

import re
import subprocess
import sys
import uuid

import pytest
from django.test import Client

from accounts.models import AuditEvent
from tests.conftest import ROOT, _test_env

# Real commits: a lift is recorded when its transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-for-tests-1"


def _login(client, username, password, address="127.0.0.1", **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def _fail_until_locked(client, username, settings, **kwargs):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, username, "wrong", **kwargs)


def test_an_account_is_locked_after_repeated_failures_even_with_the_right_password(client, make_user, settings):
    user = make_user("Viewer")
    _fail_until_locked(client, user.username, settings)

    response = _login(client, user.username, PASSWORD)

    assert response.status_code == 429
    assert not _logged_in(client)
    html = response.content.decode()
    assert "Too many failed logins" in html
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"{minutes} minutes" in html and "ask an Admin" in html


def test_the_lockout_is_recorded_once_in_the_audit_trail(client, make_user, settings):
    user = make_user("Viewer")
    _fail_until_locked(client, user.username, settings)
    _login(client, user.username, PASSWORD)  # refused while locked: a failed login, not a new lockout

    event = AuditEvent.objects.get(action="login_lockout")
    assert (event.object_name, event.result, event.ip) == (user.username, "denied", "127.0.0.1")
    assert event.params["failures"] == settings.AXES_FAILURE_LIMIT
    refused = AuditEvent.objects.filter(action="login", result="error").order_by("-id").first()
    assert "locked out" in refused.error


def test_an_account_attacked_from_many_addresses_is_locked_everywhere(client, make_user, settings):
    user = make_user("Viewer")
    for n in range(settings.AXES_FAILURE_LIMIT):
        _login(client, user.username, "wrong", address=f"192.0.2.{n + 1}")

    assert _login(client, user.username, PASSWORD, address="198.51.100.7").status_code == 429
    assert not _logged_in(client)


def test_an_address_guessing_many_accounts_is_locked_for_every_account(client, make_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, f"guess-{uuid.uuid4().hex[:6]}", "wrong", address="192.0.2.50")
    user = make_user("Viewer")

    assert _login(client, user.username, PASSWORD, address="192.0.2.50").status_code == 429
    other = Client()
    assert _login(other, user.username, PASSWORD, address="192.0.2.51").status_code == 302
    assert _logged_in(other)


def test_a_forged_x_forwarded_for_does_not_give_an_attacker_new_addresses(client, make_user, settings):
    """Without TRUSTED_PROXY_COUNT the client's own address counts, whatever headers it sends."""
    for n in range(settings.AXES_FAILURE_LIMIT):
        _login(client, f"guess-{n}", "wrong", address="192.0.2.60", HTTP_X_FORWARDED_FOR=f"203.0.113.{n + 1}")
    user = make_user("Viewer")

    response = _login(client, user.username, PASSWORD, address="192.0.2.60", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_address_it_saw_counts_not_what_the_client_forged(client, make_user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "172.18.0.1"
    for n in range(settings.AXES_FAILURE_LIMIT):  # forged left-hand entries change every time
        _login(client, f"guess-{n}", "wrong", address=proxy, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 192.0.2.70")
    user = make_user("Viewer")

    assert _login(client, user.username, PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="192.0.2.70").status_code == 429
    other = Client()
    assert _login(other, user.username, PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="192.0.2.71").status_code == 302
    assert AuditEvent.objects.filter(action="login_lockout", ip="192.0.2.70").exists()


def test_a_successful_login_below_the_limit_starts_the_count_again(client, make_user, settings):
    user = make_user("Viewer")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, user.username, "wrong")
    assert _login(client, user.username, PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, user.username, "wrong")
    assert _login(client, user.username, PASSWORD).status_code == 302


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_an_admin_lifts_a_lockout_and_the_user_logs_in_again(client, make_user, settings):
    user = make_user("Viewer")
    _fail_until_locked(client, user.username, settings)
    admin_user = make_user("Admin")
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(admin_user)

    page = admin.get("/accounts/lockouts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert user.username in html and "127.0.0.1" in html
    response = admin.post("/accounts/lockouts/lift/", {"kind": "user", "name": user.username,
                                                      "csrfmiddlewaretoken": _csrf(html)})
    assert response.status_code == 302

    # The account is free, from anywhere.
    assert _login(Client(), user.username, PASSWORD, address="192.0.2.80").status_code == 302
    event = AuditEvent.objects.get(action="login_lockout_lift", object_type="user")
    assert (event.actor_name, event.object_name) == (admin_user.username, user.username)
    # Its failures were also the address's: that lockout went with them, and says so.
    assert AuditEvent.objects.get(action="login_lockout_lift", object_type="address").object_name == "127.0.0.1"


def test_lifting_an_address_lockout_frees_that_address(client, make_user, settings):
    _fail_until_locked(client, "nobody-here", settings, address="192.0.2.90")
    admin = Client()
    admin.force_login(make_user("Admin"))
    admin.post("/accounts/lockouts/lift/", {"kind": "address", "name": "192.0.2.90"})
    user = make_user("Viewer")
    assert _login(client, user.username, PASSWORD, address="192.0.2.90").status_code == 302
    assert AuditEvent.objects.get(action="login_lockout_lift", object_type="address").object_name == "192.0.2.90"


@pytest.mark.parametrize("role", ["Viewer", "Operator"])
def test_only_admins_see_and_lift_lockouts(client, make_user, client_for, settings, role):
    _fail_until_locked(client, "victim", settings)
    other = client_for(role)
    assert other.get("/accounts/lockouts/").status_code == 403
    assert other.post("/accounts/lockouts/lift/", {"kind": "user", "name": "victim"}).status_code == 403
    assert _login(client, "victim", "whatever").status_code == 429
    assert not AuditEvent.objects.filter(action="login_lockout_lift").exists()


def test_lift_refuses_bad_input_and_changes_nothing(client, client_for, settings):
    _fail_until_locked(client, "victim", settings)
    admin = client_for("Admin")
    assert admin.get("/accounts/lockouts/lift/").status_code == 405
    response = admin.post("/accounts/lockouts/lift/", {"kind": "everything", "name": "victim"}, follow=True)
    assert "Choose a locked account or address" in response.content.decode()
    response = admin.post("/accounts/lockouts/lift/", {"kind": "user", "name": "not-locked"}, follow=True)
    assert "is not locked out" in response.content.decode()
    assert _login(client, "victim", "whatever").status_code == 429
    assert not AuditEvent.objects.filter(action="login_lockout_lift").exists()


def test_axes_reset_username_on_the_command_line_lifts_the_lockout_and_is_audited(make_user, settings):
    user = make_user("Viewer")
    client = Client()
    _fail_until_locked(client, user.username, settings)
    assert _login(client, user.username, PASSWORD).status_code == 429

    proc = subprocess.run([sys.executable, "manage.py", "axes_reset_username", user.username],
                          cwd=ROOT, env=_test_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    assert _login(client, user.username, PASSWORD, address="192.0.2.81").status_code == 302
    event = AuditEvent.objects.get(action="login_lockout_lift", object_type="user")
    assert event.actor_name.startswith("cli:") and event.object_name == user.username
