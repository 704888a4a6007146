"""A backup restored on another host: the copy through the repository (issue 16, items 2
and 3). Real engines: e1's worker backs the volume up, the restore form sends the restore
to the target host's worker, which makes the new volume on its own engine from the stored
archive."""

from __future__ import annotations

import pytest

from backups.models import Backup
from hosts.models import Host
from jobs.models import Job
from restores.models import Restore
from tests import dockercli
from tests.conftest import wait_for
from tests.engines import TREE_SCRIPT
from tests.hosts.test_multihost_engines import _backup_on
from volumes.models import Volume

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]


def _default_engine_tree(volume: str) -> str:
    return dockercli.docker("run", "--rm", "--label", dockercli.TEST_LABEL, "--network", "none", "-v",
                            f"{volume}:/data:ro", "-w", "/data", dockercli.HELPER_IMAGE, "sh", "-c", TREE_SCRIPT)


@pytest.mark.parametrize("to", [
    "local",
    "e2",  # tcp:// with TLS: the input has an attach connection of its own (volumes/datahelper.py)
])
def test_a_backup_of_one_host_restores_into_a_new_volume_on_another(
    to, registered_hosts, host_workers, extra_engine_e1, extra_engine_e2, client_for, celery_worker
):
    source = extra_engine_e1.create_volume(
        script="mkdir -p d/e && echo one > a.txt && printf 'x%.0s' $(seq 1 5000) > d/e/b.bin && ln -s a.txt l")
    host_workers("e1")
    if to != "local":
        host_workers(to)
    wait_for(lambda: Volume.objects.filter(name=f"e1:{source}").exists(), timeout=60, message="e1's volume mirrored")
    wait_for(lambda: all(h.online for h in Host.objects.filter(name__in={"e1", to} - {"local"})), timeout=30,
             message="the hosts' heartbeats")
    backup = _backup_on(f"e1:{source}")
    assert backup.status == Backup.Status.SUCCEEDED, Job.objects.get(pk=backup.job_id).error

    operator = client_for("Operator")
    form = operator.get(f"/backups/{backup.pk}/restore/").content.decode()
    assert '<option value="e1" selected>' in form  # the backup's own host by default
    target = dockercli.unique_name("copy")  # (the test run's prefix: removed by the cleanup)
    response = operator.post(f"/backups/{backup.pk}/restore/", {"name": target, "host": to, "driver": "local"})
    assert response.status_code == 302, response.content.decode()[:2000]
    ref = target if to == "local" else f"{to}:{target}"
    restore = Restore.objects.get(volume_name=ref)
    assert restore.job.host == to
    wait_for(lambda: not Job.objects.get(pk=restore.job_id).is_active, timeout=120, message=f"the restore on {to}")
    job = Job.objects.get(pk=restore.job_id)
    assert job.status == Job.Status.SUCCEEDED, job.error

    assert not extra_engine_e1.volume_exists(target)
    copy = _default_engine_tree(target) if to == "local" else extra_engine_e2.tree(target)
    assert copy.strip() == extra_engine_e1.tree(source).strip()
    assert "a.txt" in copy and "b.bin" in copy
    assert extra_engine_e1.volume_exists(source)  # the source is untouched
    wait_for(lambda: Volume.objects.filter(name=ref, host__name=to).exists(), timeout=60,
             message=f"the new volume in {to}'s mirror")
    page = client_for("Viewer").get(f"/restores/{restore.pk}/").content.decode()
    assert "copied from the host e1" in page
