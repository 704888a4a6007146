"""Several real engines, one dashboard: each host's worker serves its own engine and its own
queue, the mirror knows which volume is where, and a stopped host shows offline while the
others work (issue 16, item 6)."""

from __future__ import annotations

import pytest
from django.db import transaction

from backups.models import Backup
from backups.services import backup_start
from hosts.models import Host
from jobs.models import Job
from tests.conftest import wait_for
from volumes.models import EngineStatus, Volume

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]


def _engine_id(engine) -> str:
    return engine.client.info()["ID"]


def _backup_on(ref: str) -> Backup:
    with transaction.atomic():
        backup = backup_start(volume_name=ref, trigger="test")
    wait_for(lambda: not Job.objects.get(pk=backup.job_id).is_active, timeout=120,
             message=f"the backup of {ref} to end")
    backup.refresh_from_db()
    return backup


def test_two_hosts_list_their_volumes_and_back_up_on_their_own_workers(
    registered_hosts, host_workers, extra_engine_e1, extra_engine_e2, client_for, celery_worker
):
    one = extra_engine_e1.create_volume(script="echo one > /data/a.txt")
    two = extra_engine_e2.create_volume(script="mkdir d && echo two > /data/d/b.txt")
    host_workers("e1")
    host_workers("e2")  # over tcp:// with the TLS client certificate from its row

    # Each worker's watcher syncs its own engine at start: the mirror gets (host, name).
    wait_for(lambda: Volume.objects.filter(name__in=[f"e1:{one}", f"e2:{two}"]).count() == 2, timeout=60,
             message="both hosts' volumes in the mirror")
    v1, v2 = Volume.objects.get(name=f"e1:{one}"), Volume.objects.get(name=f"e2:{two}")
    assert (v1.host.name, v1.engine_name, v2.host.name, v2.engine_name) == ("e1", one, "e2", two)
    # A host's sync touches its own rows only: e1 has no e2 volume, the default host none of theirs.
    assert not Volume.objects.filter(host__name="e1", name__startswith="e2:").exists()
    assert EngineStatus.get("e2").engine_id == _engine_id(extra_engine_e2)
    wait_for(lambda: all(h.online for h in Host.objects.filter(name__in=["e1", "e2"])), timeout=30,
             message="both hosts' heartbeats")

    admin = client_for("Admin")
    page = admin.get("/volumes/?host=e1").content.decode()
    assert f'data-volume="e1:{one}"' in page and f'data-volume="e2:{two}"' not in page
    hosts_page = admin.get("/hosts/").content.decode()
    assert 'data-host="e1" data-online="yes"' in hosts_page and 'data-host="e2" data-online="yes"' in hosts_page

    b1, b2 = _backup_on(f"e1:{one}"), _backup_on(f"e2:{two}")
    for backup, engine, host in ((b1, extra_engine_e1, "e1"), (b2, extra_engine_e2, "e2")):
        job = Job.objects.get(pk=backup.job_id)
        assert backup.status == Backup.Status.SUCCEEDED, job.error
        assert job.host == host
        # Read from the engine that holds the volume, by that host's worker.
        assert backup.manifest["engine"]["id"] == _engine_id(engine)
        assert backup.file_count == 1
        # Another host's archives live under "<host>+/" (no default-host volume folder can be named so).
        assert backup.key.startswith(f"{host}+/{backup.volume_name.split(':')[1]}/")


def test_a_host_whose_worker_stopped_is_offline_while_the_other_works(
    registered_hosts, host_workers, extra_engine_e1, extra_engine_e2, client_for, celery_worker
):
    one = extra_engine_e1.create_volume(script="echo one > /data/a.txt")
    two = extra_engine_e2.create_volume(script="echo two > /data/b.txt")
    host_workers("e1")
    w2 = host_workers("e2")
    wait_for(lambda: Volume.objects.filter(name__in=[f"e1:{one}", f"e2:{two}"]).count() == 2, timeout=60,
             message="both hosts' volumes in the mirror")

    w2.stop()
    e2 = Host.objects.get(name="e2")
    assert not e2.online and e2.offline_since is not None
    admin = client_for("Admin")
    page = admin.get(f"/volumes/e2:{two}/").content.decode()
    # The page renders from the mirror, with the host's banner.
    assert page.count('data-host-offline="e2"') == 1 and two in page
    assert 'data-host-offline="e1"' not in page

    # A backup of e2's volume waits in e2's queue; e1 goes on working meanwhile.
    with transaction.atomic():
        waiting = backup_start(volume_name=f"e2:{two}", trigger="test")
    done = _backup_on(f"e1:{one}")
    assert done.status == Backup.Status.SUCCEEDED
    assert Job.objects.get(pk=waiting.job_id).status == Job.Status.QUEUED  # nobody else took it

    # e2's worker comes back and takes its job.
    host_workers("e2", watcher=False)
    wait_for(lambda: not Job.objects.get(pk=waiting.job_id).is_active, timeout=120,
             message="e2's worker to run the waiting backup")
    waiting.refresh_from_db()
    assert waiting.status == Backup.Status.SUCCEEDED and Host.objects.get(name="e2").online
