"""The create and restore forms offer the volume drivers of every host and refuse one the
chosen host's engine did not report (each host's EngineStatus, written by its own sync)."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from django.utils import timezone

from hosts import refs
from hosts.models import Host
from tests.hosts.test_pages_by_host import _backup, _volume
from volumes.forms import VolumeCreateForm, known_drivers
from volumes.models import EngineStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def nfs_on_e1(db):
    """The default host reports only `local`; e1 also the plugin `nfsplug`."""
    EngineStatus.get(refs.default_host_name())
    EngineStatus.objects.filter(host__name=refs.default_host_name()).update(volume_plugins=["local"])
    e1 = Host.objects.create(name="e1", heartbeat_at=timezone.now())
    EngineStatus.objects.create(host=e1, volume_plugins=["local", "nfsplug", 7])  # a non-string from an engine: dropped
    return e1


def test_each_host_has_its_own_drivers_and_a_form_offers_all(nfs_on_e1):
    assert known_drivers(refs.default_host_name()) == ["local"]
    assert known_drivers("e1") == ["local", "nfsplug"]
    assert known_drivers() == ["local", "nfsplug"]
    assert known_drivers("e9") == ["local"]


def test_creating_a_volume_refuses_a_driver_its_host_lacks(nfs_on_e1):
    here = VolumeCreateForm(QueryDict(f"name=v1&driver=nfsplug&host={refs.default_host_name()}"))
    assert not here.is_valid()
    assert "reported no volume driver named nfsplug" in str(here.errors["driver"])
    there = VolumeCreateForm(QueryDict("name=v1&driver=nfsplug&host=e1"))
    assert there.is_valid(), there.errors


def test_restoring_into_a_new_volume_refuses_a_driver_the_target_host_lacks(nfs_on_e1, client_for):
    backup = _backup(_volume("pgdata"))
    admin = client_for("Admin")  # only an Admin may choose a driver
    page = admin.get(f"/backups/{backup.pk}/restore/").content.decode()
    assert '<option value="nfsplug"' in page
    response = admin.post(f"/backups/{backup.pk}/restore/", {"name": "copy1", "host": refs.default_host_name(),
                                                             "driver": "nfsplug"})
    assert response.status_code in (200, 400)
    assert "reported no volume driver named nfsplug" in response.content.decode()
