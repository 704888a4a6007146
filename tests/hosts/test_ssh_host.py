"""A host reached over ssh:// (the SDK's use_ssh_client: the worker's own `ssh` runs
`docker system dial-stdio` on the far side). The harness's sshd (scripts/engines.sh) forces
its one key to that command on engine e1's socket, as the README advises for a worker's key.
Before this test, ssh:// hosts were accepted but broken twice: the SDK needs paramiko even
for its ssh client, and the end of a restore's input never reached the helper (an ssh
pipe is no socket to half-close), so every restore hung."""

from __future__ import annotations

import pytest
from django.db import transaction

from backups.models import Backup
from hosts.services import host_save
from jobs.models import Job
from restores.services import restore_new_start
from tests import dockercli
from tests.conftest import wait_for
from tests.hosts.test_multihost_engines import _backup_on
from volumes.models import Volume

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]


def test_a_host_over_ssh_is_mirrored_backed_up_and_restored(e1_over_ssh, extra_engine_e1, host_workers,
                                                             celery_worker):
    host_save(name="s1", url=e1_over_ssh, actor_name="test")
    source = extra_engine_e1.create_volume(
        script="mkdir -p d/e && echo one > a.txt && head -c 3000000 /dev/urandom > d/e/b.bin && ln -s a.txt l")
    host_workers("s1")
    wait_for(lambda: Volume.objects.filter(name=f"s1:{source}").exists(), timeout=60,
             message="the ssh host's volume in the mirror")

    backup = _backup_on(f"s1:{source}")
    job = Job.objects.get(pk=backup.job_id)
    assert backup.status == Backup.Status.SUCCEEDED, job.error
    assert job.host == "s1" and backup.file_count == 3
    assert backup.manifest["engine"]["id"] == extra_engine_e1.client.info()["ID"]

    # Into a new volume on the same host: the compressed archive goes up the ssh pipe to the
    # helper's `zstd -dc | tar -x`, and the pipe's end must end the helper's input.
    target = dockercli.unique_name("copy")
    with transaction.atomic():
        restore = restore_new_start(backup=backup, volume_name=f"s1:{target}", trigger="test")
    wait_for(lambda: not Job.objects.get(pk=restore.job_id).is_active, timeout=120,
             message="the restore over ssh to end")
    job = Job.objects.get(pk=restore.job_id)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result.get("data_channel") == "attach"
    assert extra_engine_e1.tree(target) == extra_engine_e1.tree(source)
