import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from accounts import roles
from accounts.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_migration_creates_three_roles_with_growing_permissions():
    viewer, operator, admin = (
        {p.codename for p in Group.objects.get(name=n).permissions.all()} for n in ("Viewer", "Operator", "Admin")
    )
    assert viewer == {"view_inventory"}
    assert viewer < operator < admin
    assert {"run_backup", "restore_new", "download_archive"} <= operator
    assert {"manage_volumes", "restore_in_place", "manage_policies", "manage_users"} <= admin - operator


@pytest.mark.parametrize(
    "role, allowed",
    [
        ("Viewer", {roles.VIEW_INVENTORY}),
        ("Operator", {roles.VIEW_INVENTORY, roles.RUN_BACKUP, roles.RESTORE_NEW, roles.DOWNLOAD_ARCHIVE}),
    ],
)
def test_role_grants_exactly_its_permissions(make_user, role, allowed):
    user = make_user(role)
    everything = {roles.VIEW_INVENTORY, roles.RUN_BACKUP, roles.RESTORE_NEW, roles.DOWNLOAD_ARCHIVE,
                  roles.MANAGE_VOLUMES, roles.RESTORE_IN_PLACE, roles.MANAGE_POLICIES, roles.MANAGE_USERS}
    assert {p for p in everything if user.has_perm(p)} == allowed


def test_ensure_admin_creates_admin_once_with_given_password(monkeypatch, capsys):
    monkeypatch.setenv("CARGOHOLD_ADMIN_PASSWORD", "correct-horse-battery")
    call_command("ensure_admin")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("correct-horse-battery")
    assert admin.groups.filter(name="Admin").exists()

    call_command("ensure_admin")
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert "exists" in capsys.readouterr().out


def test_ensure_admin_generates_and_prints_a_password(monkeypatch, capsys):
    monkeypatch.delenv("CARGOHOLD_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password:")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_logins_and_failed_logins_are_audited(client, make_user):
    user = make_user("Viewer")
    client.post("/accounts/login/", {"username": user.username, "password": "nope"})
    client.post("/accounts/login/", {"username": user.username, "password": "pw-for-tests-1"})
    events = list(AuditEvent.objects.filter(action="login").order_by("id").values_list("result", "object_name"))
    assert events == [("error", user.username), ("ok", user.username)]


def test_audit_events_cannot_be_changed_or_deleted():
    event = AuditEvent.objects.create(action="x", object_name="y")
    event.action = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(action="tampered")
    assert AuditEvent.objects.get(pk=event.pk).action == "x"


def test_audit_scrubs_secrets_from_parameters():
    from accounts.services import audit_record

    event = audit_record(action="volume_create", params={"options": {"o": "username=u,password=hunter2,vers=3"}, "api_token": "t"})
    assert "hunter2" not in str(event.params)
    assert event.params["api_token"] == "***"
