"""Removing volumes against the real engine: the engine decides, the mirror follows."""

import pytest

from accounts.models import AuditEvent
from project.errors import Refused
from tests import dockercli
from tests.volumes.lifecycle import run_inline
from volumes import services
from volumes.models import Volume

# transaction=True: the runner closes a connection left in a transaction, as a worker would.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.usefixtures("no_enqueue")]


def _remove(user, name):
    return services.volume_remove_start(volume=Volume.objects.get(name=name), user=user)


def test_remove_deletes_the_volume_and_keeps_its_record_marked_gone(make_user):
    admin = make_user("Admin")
    name = dockercli.create_volume()
    dockercli.fill_volume(name, "echo hello > /data/f")
    services.mirror_sync()
    record_pk = Volume.objects.get(name=name).pk

    result, error = run_inline(_remove(admin, name))

    assert error is None and "Removed volume" in result["message"]
    assert not dockercli.volume_exists(name)
    kept = Volume.objects.get(pk=record_pk)  # backups keep their owner
    assert kept.gone_since is not None
    event = AuditEvent.objects.get(action="volume_remove")
    assert (event.result, event.object_name, event.actor_name) == ("ok", name, admin.username)


def test_remove_is_refused_while_a_stopped_container_uses_it(make_user):
    name = dockercli.create_volume()
    container = dockercli.run_container(f"{name}:/data", start=False)
    services.mirror_sync()

    with pytest.raises(Refused) as refused:
        _remove(make_user("Admin"), name)

    assert container in str(refused.value) and "(created)" in str(refused.value)
    assert dockercli.volume_exists(name)


def test_worker_asks_the_engine_not_the_mirror_a_container_made_since_the_sync_blocks_it(make_user):
    name = dockercli.create_volume()
    services.mirror_sync()
    job = _remove(make_user("Admin"), name)  # the mirror saw no user
    container = dockercli.run_container(f"{name}:/data", command="true", detach=False)  # ran and exited
    assert dockercli.container_state(container) == "exited"

    _, error = run_inline(job)

    assert isinstance(error, Refused)
    assert f"{container} (exited)" in str(error) and "stopped containers count" in str(error)
    assert dockercli.volume_exists(name)
    event = AuditEvent.objects.get(action="volume_remove")
    assert event.result == "error" and container in event.error


def test_protected_volume_is_refused_by_the_page_and_by_the_worker(make_user):
    name = dockercli.create_volume(labels={"cargohold.protect": "true"})
    services.mirror_sync()
    admin = make_user("Admin")
    with pytest.raises(Refused, match="protected"):
        _remove(admin, name)

    # Even if the mirror were out of date, the worker reads the label from the engine.
    Volume.objects.filter(name=name).update(labels={})
    _, error = run_inline(_remove(admin, name))

    assert isinstance(error, Refused) and "cargohold.protect=true" in str(error)
    assert dockercli.volume_exists(name)


def test_volume_already_removed_outside_cargohold_is_refused_and_marked_gone(make_user):
    name = dockercli.create_volume()
    services.mirror_sync()
    job = _remove(make_user("Admin"), name)
    dockercli.docker("volume", "rm", name)

    _, error = run_inline(job)

    assert isinstance(error, Refused) and "no longer on the engine" in str(error)
    assert Volume.objects.get(name=name).gone_since is not None
