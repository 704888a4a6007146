"""Removing a host (its worker stopped): its row and mirror go, its backups stay; refused
for the default host, a host whose worker runs, and one with work under way; Admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent
from backups.models import Backup
from hosts import refs
from hosts.models import Host, Transfer
from hosts.services import host_remove
from jobs.models import Job
from project.errors import Refused
from tests.hosts.test_pages_by_host import _backup, _container, _volume
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_host(db):
    """Host e5, its worker last heard an hour ago, with a volume, a container, a backup."""
    e5 = Host.objects.create(name="e5", heartbeat_at=timezone.now() - timedelta(hours=1))
    EngineStatus.objects.create(host=e5)
    volume = _volume("e5:pgdata", e5, size_bytes=5000)
    _container("web-e5", volume, e5)
    _backup(volume)
    here = _volume("pgdata")  # the default host's namesake stays
    _container("web-local", here)
    return e5


def test_removing_a_host_forgets_its_mirror_and_keeps_its_backups(old_host, make_user):
    admin = make_user("Admin")
    counts = host_remove(name="e5", actor=admin)
    assert counts == {"volumes": 1, "containers": 1}
    assert not Host.objects.filter(name="e5").exists()
    assert not Volume.objects.filter(name="e5:pgdata").exists()
    assert not Container.objects.filter(name="web-e5").exists()
    assert not EngineStatus.objects.filter(host__name="e5").exists()
    assert Volume.objects.filter(name="pgdata").exists() and Container.objects.filter(name="web-local").exists()
    assert Mount.objects.filter(container__name="web-local").count() == 1
    backup = Backup.objects.get(volume_name="e5:pgdata")
    assert backup.volume is None  # kept, under its reference
    event = AuditEvent.objects.get(action="host_remove")
    assert event.object_name == "e5" and event.actor == admin


def test_the_default_host_an_online_host_and_a_host_at_work_are_not_removed(old_host):
    with pytest.raises(Refused, match="default one"):
        host_remove(name=refs.default_host_name())
    Host.objects.filter(name="e5").update(heartbeat_at=timezone.now())
    with pytest.raises(Refused, match="still running"):
        host_remove(name="e5")
    Host.objects.filter(name="e5").update(heartbeat_at=timezone.now() - timedelta(hours=1))
    job = Job.objects.create(kind="backup", target="e5:pgdata", host="e5", status=Job.Status.QUEUED)
    with pytest.raises(Refused, match="queued or running"):
        host_remove(name="e5")
    job.status = Job.Status.FAILED
    job.save()
    Transfer.objects.create(source_ref="pgdata", target_ref="e5:copy")
    with pytest.raises(Refused, match="transfer"):
        host_remove(name="e5")
    assert Host.objects.filter(name="e5").exists() and Volume.objects.filter(name="e5:pgdata").exists()
    with pytest.raises(Refused, match="No host named"):
        host_remove(name="e9")


def test_the_remove_page_says_what_goes_and_needs_admin_confirmation_and_csrf(old_host, client_for, make_user):
    for role in ("Viewer", "Operator"):
        c = client_for(role)
        assert c.get("/hosts/e5/remove/").status_code == 403
        assert c.post("/hosts/e5/remove/", {"confirm": "e5"}).status_code == 403
    assert Host.objects.filter(name="e5").exists()
    admin = client_for("Admin")
    page = admin.get("/hosts/e5/remove/").content.decode()
    assert "1 volume, 1 container" in page and "Its backups stay" in page
    assert admin.post("/hosts/e5/remove/", {}).status_code == 400  # not confirmed
    assert Host.objects.filter(name="e5").exists()
    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(make_user("Admin"))
    assert csrf.post("/hosts/e5/remove/", {"confirm": "e5"}).status_code == 403
    assert Host.objects.filter(name="e5").exists()
    response = admin.post("/hosts/e5/remove/", {"confirm": "e5"})
    assert response.status_code == 302 and not Host.objects.filter(name="e5").exists()
    assert admin.get("/hosts/e5/remove/").status_code == 404


def test_an_online_host_shows_why_it_cannot_be_removed(old_host, client_for):
    Host.objects.filter(name="e5").update(heartbeat_at=timezone.now())
    admin = client_for("Admin")
    page = admin.get("/hosts/e5/remove/").content.decode()
    assert "stop it first" in page and "disabled" in page
    assert admin.post("/hosts/e5/remove/", {"confirm": "e5"}).status_code == 400
    assert Host.objects.filter(name="e5").exists()


def test_the_cli_removes_a_host_only_with_yes(old_host):
    with pytest.raises(CommandError, match="--yes"):
        call_command("remove_host", "e5")
    assert Host.objects.filter(name="e5").exists()
    call_command("remove_host", "e5", "--yes")
    assert not Host.objects.filter(name="e5").exists()
    with pytest.raises(CommandError, match="default one"):
        call_command("remove_host", refs.default_host_name(), "--yes")
