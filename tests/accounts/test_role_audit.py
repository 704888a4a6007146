"""Every change of who may do what is audited, whichever way it is made: /admin/, a
management command, or code. Role changes are written when their transaction commits, one
row per user (or group) with the state before and after."""

import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client

from accounts.models import AuditEvent
from tests.conftest import ROOT, _test_env

# Real commits: role changes are written when their transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


def _rows(action, about: str | None = None):
    """The audit rows of `action`, oldest first; `about`: only those about that object."""
    rows = AuditEvent.objects.filter(action=action).order_by("id")
    return list(rows if about is None else rows.filter(object_name=about))


def _one(action, about: str):
    """The one row of `action` about `about`, naming every row of that action if not one."""
    rows = _rows(action, about)
    assert len(rows) == 1, [(e.actor_name, e.object_name, e.params, e.at) for e in _rows(action)]
    return rows[0]


def _no_hashes_anywhere():
    text = str(list(AuditEvent.objects.values_list("params", "error", "object_name")))
    for user in User.objects.all():
        assert user.password.split("$")[-1] not in text
    assert "md5$" not in text and "pbkdf2" not in text


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_changing_a_users_group_in_the_admin_records_actor_target_and_roles(make_user):
    superuser = User.objects.create_superuser(username="root-admin", password="pw-for-tests-1")
    target = make_user("Viewer", username="dana")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(superuser)
    form = browser.get(f"/admin/auth/user/{target.pk}/change/").content.decode()

    response = browser.post(f"/admin/auth/user/{target.pk}/change/", {
        "csrfmiddlewaretoken": _csrf(form), "username": "dana", "first_name": "", "last_name": "",
        "email": "", "is_active": "on", "groups": [Group.objects.get(name="Operator").pk],
        "date_joined_0": "2030-01-01", "date_joined_1": "00:00:00", "_save": "Save",
    })

    assert response.status_code == 302, response.content.decode()[:2000]
    # The admin's change is one row, not a removal and an addition (rows made by
    # make_user before it are not the admin's).
    by_admin = [e for e in _rows("user_roles_change", "dana") if e.actor_name == "root-admin"]
    assert len(by_admin) == 1, [(e.actor_name, e.object_name, e.params) for e in _rows("user_roles_change")]
    (event,) = by_admin
    assert (event.actor_name, event.object_type, event.object_name) == ("root-admin", "user", "dana")
    assert event.params["before"]["roles"] == ["Viewer"]
    assert event.params["after"]["roles"] == ["Operator"]
    assert event.ip == "127.0.0.1"
    _no_hashes_anywhere()


def test_adding_a_permission_to_a_group_in_the_admin_is_audited(make_user):
    superuser = User.objects.create_superuser(username="root-admin", password="pw-for-tests-1")
    make_user("Viewer")  # the roles exist
    viewer = Group.objects.get(name="Viewer")
    manage_users = Permission.objects.get(codename="manage_users", content_type__app_label="accounts")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(superuser)
    url = f"/admin/auth/group/{viewer.pk}/change/"
    form = browser.get(url).content.decode()

    permissions = list(viewer.permissions.values_list("pk", flat=True)) + [manage_users.pk]
    response = browser.post(url, {"csrfmiddlewaretoken": _csrf(form), "name": "Viewer", "permissions": permissions,
                                  "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[:2000]
    event = _rows("group_permissions_change")[-1]
    assert (event.actor_name, event.object_type, event.object_name) == ("root-admin", "group", "Viewer")
    assert (event.params["added"], event.params["removed"]) == (["accounts.manage_users"], [])


def test_a_password_set_by_an_admin_in_the_admin_is_audited_without_the_hash(make_user):
    superuser = User.objects.create_superuser(username="root-admin", password="pw-for-tests-1")
    target = make_user("Viewer", username="erin")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(superuser)
    url = f"/admin/auth/user/{target.pk}/password/"
    form = browser.get(url).content.decode()

    response = browser.post(url, {"csrfmiddlewaretoken": _csrf(form), "password1": "A-new-long-passphrase-9",
                                  "password2": "A-new-long-passphrase-9", "usable_password": "true"})

    assert response.status_code == 302
    event = _one("user_password_change", "erin")
    assert (event.actor_name, event.object_name) == ("root-admin", "erin")
    _no_hashes_anywhere()


def test_group_changes_made_in_code_are_audited_both_ways_round(make_user):
    user = make_user("Viewer", username="frank")
    admin_group = Group.objects.get(name="Admin")

    user.groups.add(admin_group)
    admin_group.user_set.remove(user)
    user.groups.clear()

    changes = [(e.params["before"]["roles"], e.params["after"]["roles"]) for e in _rows("user_roles_change")]
    assert changes[-3:] == [(["Viewer"], ["Admin", "Viewer"]), (["Admin", "Viewer"], ["Viewer"]), (["Viewer"], [])]
    assert all(e.actor_name == "system" for e in _rows("user_roles_change"))


def test_flags_activation_and_deletion_are_audited(make_user):
    user = make_user("Operator", username="gina")
    user.is_superuser = True
    user.is_staff = True
    user.save()
    user.is_active = False
    user.save()
    user.is_active = True
    user.save()
    user.delete()

    (flags,) = [e for e in _rows("user_roles_change") if "is_staff" in e.params["before"]]
    assert flags.params["before"] == {"is_staff": False, "is_superuser": False}
    assert flags.params["after"] == {"is_staff": True, "is_superuser": True}
    assert [e.object_name for e in _rows("user_deactivate") + _rows("user_activate")] == ["gina", "gina"]
    deleted = _one("user_delete", "gina")
    assert deleted.object_name == "gina" and deleted.params["roles"] == ["Operator"] and deleted.params["is_superuser"]
    assert any(e.object_name == "gina" for e in _rows("user_create"))


def test_direct_permissions_and_group_permissions_are_audited(make_user):
    user = make_user("Viewer", username="hal")
    manage_users = Permission.objects.get(codename="manage_users", content_type__app_label="accounts")
    viewer = Group.objects.get(name="Viewer")

    viewer.permissions.add(manage_users)
    manage_users.group_set.remove(viewer)
    user.user_permissions.add(manage_users)

    added, removed = _rows("group_permissions_change")[-2:]
    assert (added.object_name, added.params["added"], added.params["removed"]) == ("Viewer", ["accounts.manage_users"], [])
    assert (removed.params["added"], removed.params["removed"]) == ([], ["accounts.manage_users"])
    direct = _rows("user_roles_change")[-1]
    assert direct.params["after"]["permissions"] == ["accounts.manage_users"]


def test_group_created_and_deleted_names_its_members(make_user):
    user = make_user(None, username="ivy")
    group = Group.objects.create(name="Night shift")
    user.groups.add(group)
    group.delete()

    assert _rows("group_create")[-1].object_name == "Night shift"
    deleted = _one("group_delete", "Night shift")
    assert deleted.params["members"] == ["ivy"]


def test_logging_in_changes_no_role_and_records_no_role_change(client, make_user):
    user = make_user("Viewer")
    last = AuditEvent.objects.order_by("-id").first().pk
    client.post("/accounts/login/", {"username": user.username, "password": "pw-for-tests-1"})
    assert _logged_in_ok(client)
    assert not AuditEvent.objects.filter(pk__gt=last, action__startswith="user_").exists()


def _logged_in_ok(client):
    return "_auth_user_id" in client.session


def test_a_rolled_back_change_is_not_recorded(make_user):
    from django.db import transaction

    user = make_user("Viewer", username="jo")
    try:
        with transaction.atomic():
            user.groups.add(Group.objects.get(name="Admin"))
            raise RuntimeError("changed my mind")
    except RuntimeError:
        pass
    user.groups.add(Group.objects.get(name="Operator"))

    event = _rows("user_roles_change")[-1]
    assert (event.params["before"]["roles"], event.params["after"]["roles"]) == (["Viewer"], ["Operator", "Viewer"])
    assert not any("Admin" in e.params["after"]["roles"] for e in _rows("user_roles_change"))


def test_ensure_admin_records_the_cli_as_actor(monkeypatch):
    monkeypatch.setenv("CARGOHOLD_ADMIN_PASSWORD", "correct-horse-battery")
    call_command("ensure_admin")
    created = _one("user_create", "admin")
    roles = _one("user_roles_change", "admin")
    assert created.object_name == "admin" and created.params["is_superuser"] is True
    assert roles.params["after"]["roles"] == ["Admin"]
    assert created.actor_name.startswith("cli:") and roles.actor_name.startswith("cli:")
    _no_hashes_anywhere()


def test_djangos_own_commands_are_audited_with_the_cli_as_actor():
    env = _test_env() | {"DJANGO_SUPERUSER_PASSWORD": "Another-long-passphrase-7"}
    proc = subprocess.run([sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", "kim",
                           "--email", "kim@example.com"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr

    event = _one("user_create", "kim")
    assert event.object_name == "kim" and event.params["is_superuser"] is True
    assert event.actor_name == f"cli:{os.environ.get('USER') or __import__('getpass').getuser()}"
    _no_hashes_anywhere()
