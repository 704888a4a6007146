"""Two mirror syncs at once (the event watcher's and a job's) on PostgreSQL, where nothing
serializes whole transactions as SQLite's IMMEDIATE mode does."""

import threading

import pytest
from django.db import connection, connections

from hosts import refs
from hosts.models import Host
from tests import dockercli
from tests.conftest import wait_for
from volumes import services
from volumes.models import Volume

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


def _waiting_on_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's concurrency (the PostgreSQL pass)")
def test_a_sync_that_starts_while_another_writes_waits_and_neither_inserts_a_volume_twice(monkeypatch):
    name = dockercli.create_volume()
    dockercli.run_container(f"{name}:/data")
    services.mirror_sync()  # the default host has mirrored the same engine, its container included
    # A host of this test's own (on the same local engine): no session worker or event
    # watcher syncs it, so every volume is new to both syncs here. (On the default host a
    # watcher's sync could mirror the volume first, and the first sync then found nothing new.)
    # Two hosts on one engine list the same containers: unique per host (CI found it).
    host = f"synctest{dockercli.RUN_ID}".replace("_", "-")[:40]
    Host.objects.create(name=host)  # blank url: the local engine
    monkeypatch.setenv("CARGOHOLD_WORKER_HOST", host)
    first_read = threading.Event()  # the first sync has read the mirror and found the volume new
    release = threading.Event()
    second_entered = threading.Event()  # the second sync got as far as the first (no lock)
    original = services._search_text
    errors: list[BaseException] = []

    def search_text(*args, **kwargs):
        if threading.current_thread().name == "first-sync":
            if not first_read.is_set():
                first_read.set()
                release.wait()
        elif threading.current_thread().name == "second-sync":
            second_entered.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "_search_text", search_text)

    def sync():
        try:
            services.mirror_sync()
        except BaseException as exc:  # noqa: BLE001  (reported by the test below)
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=sync, name="first-sync")
    first.start()
    wait_for(lambda: first_read.is_set() or not first.is_alive(), message="the first sync to read the mirror")
    assert errors == [] and first_read.is_set(), errors
    second = threading.Thread(target=sync, name="second-sync")
    second.start()
    # Either the second waits for the first's lock, or (the bug) it reads the same empty
    # mirror, inserts the volume and commits, and the first's insert then fails.
    wait_for(lambda: second_entered.is_set() or _waiting_on_a_lock(), message="the second sync to wait or to pass")
    if second_entered.is_set():
        second.join(timeout=60)
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)

    assert errors == []
    assert Volume.objects.filter(name=refs.make_ref(host, name)).count() == 1
