"""A volume moved between two real engines (issue 16, item 6): backed up by the default
host's worker, restored on e1 by e1's own worker (`manage.py host_worker --host e1`), the
content compared file by file, and the source removed only after the copy succeeded."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from hosts import transfers
from hosts.models import Host, Transfer
from jobs.models import Job
from tests import dockercli
from tests.conftest import wait_for
from tests.engines import TREE_SCRIPT
from volumes.models import Volume
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

CONTENT = r"""
set -e
cd /data
mkdir -p app/conf empty
printf 'hello\n' > app/conf/settings.ini
head -c 200000 /dev/urandom > app/blob.bin
printf 'x' > 'name with spaces'
ln -s conf/settings.ini app/link
chown -R 1000:1000 app
chmod 0640 app/conf/settings.ini
"""


def _tree_here(volume: str) -> str:
    """TREE_SCRIPT's listing of a volume on the main (default) engine."""
    return dockercli.docker("run", "--rm", "--network", "none", "--label", dockercli.TEST_LABEL,
                            "-v", f"{volume}:/data:ro", "-w", "/data", dockercli.HELPER_IMAGE, "sh", "-c", TREE_SCRIPT)


def _progress(transfer_id: int):
    return transfers.transfer_progress(
        Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get(pk=transfer_id))


def test_a_volume_moves_to_another_host_with_its_content(extra_engine_e1, host_workers, celery_worker, make_user):
    from hosts.services import host_save

    source = dockercli.create_volume()
    dockercli.fill_volume(source, CONTENT)
    expected = _tree_here(source)
    assert "settings.ini" in expected and "blob.bin" in expected
    mirror_sync()  # the default host's mirror knows the source

    host_save(name="e1", actor_name="test", **extra_engine_e1.host_fields())
    host_workers("e1", watcher=False)
    wait_for(lambda: Host.objects.get(name="e1").online, timeout=30, message="e1's heartbeat")
    target_name = f"{source}-moved"
    try:
        with transaction.atomic():
            transfer = transfers.transfer_start(
                volume=Volume.objects.get(name=source), target_host="e1", target_name=target_name,
                remove_source=True, user=make_user("Admin"))
        wait_for(lambda: _progress(transfer.pk).ended, timeout=240, message="the transfer to end")
        transfer = Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get(pk=transfer.pk)
        progress = transfers.transfer_progress(transfer)
        assert progress.phase == transfers.DONE, (progress.message, transfer.error)

        # Each step ran on the worker of the host it touched.
        assert transfer.backup.job.host == "local" and transfer.removal_job.host == "local"
        assert transfer.restore.job.host == "e1" and transfer.restore.job.status == Job.Status.SUCCEEDED

        # The copy on e1 holds exactly what was written: every path, type, mode, owner, size, SHA-256.
        assert extra_engine_e1.volume_exists(target_name)
        assert extra_engine_e1.tree(target_name).strip() == expected

        # The source is gone from its engine (and marked gone in the mirror, its backups kept).
        assert not dockercli.volume_exists(source)
        wait_for(lambda: Volume.objects.get(name=source).is_gone, timeout=30, message="the source marked gone")
        assert Volume.objects.filter(name=f"e1:{target_name}", gone_since__isnull=True).exists()
    finally:
        if extra_engine_e1.volume_exists(target_name):
            extra_engine_e1.client.volumes.get(target_name).remove(force=True)



def _transfer_and_wait(source: str, host: str, *, remove: bool, user) -> Transfer:
    with transaction.atomic():
        transfer = transfers.transfer_start(volume=Volume.objects.get(name=source), target_host=host,
                                            target_name=source, remove_source=remove, user=user)
    wait_for(lambda: _progress(transfer.pk).ended, timeout=240, message="the transfer to end")
    return Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get(pk=transfer.pk)


def test_a_move_of_a_volume_in_use_keeps_the_copy_and_the_source(extra_engine_e1, host_workers, celery_worker,
                                                                 make_user):
    from hosts.services import host_save

    source = dockercli.create_volume()
    dockercli.fill_volume(source, CONTENT)
    user = dockercli.run_container(f"{source}:/srv")  # a container keeps using the source
    expected = _tree_here(source)
    mirror_sync()
    host_save(name="e1", actor_name="test", **extra_engine_e1.host_fields())
    host_workers("e1", watcher=False)
    wait_for(lambda: Host.objects.get(name="e1").online, timeout=30, message="e1's heartbeat")
    admin = make_user("Admin")
    try:
        # From the CLI: --wait follows the steps and exits non-zero, since the move did not end "done".
        err = StringIO()
        with pytest.raises(CommandError, match="copied; the source was not removed"):
            call_command("transfer_volume", source, "--to-host", "e1", "--remove-source", "--user", admin.username,
                         "--wait", "--timeout", "240", stdout=StringIO(), stderr=err)
        assert "backing up" in err.getvalue() or "restoring" in err.getvalue()
        transfer = Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get()
        progress = transfers.transfer_progress(transfer)
        assert progress.phase == transfers.COPIED, (progress.message, transfer.restore and transfer.restore.job.log)
        assert transfer.trigger == "cli" and transfer.created_by == admin
        assert user in progress.message  # why the source stayed: who uses it
        assert extra_engine_e1.tree(source).strip() == expected
        assert dockercli.volume_exists(source) and dockercli.container_state(user) == "running"
        assert transfer.removal_job is None and not Job.objects.filter(kind="volume_remove").exists()
    finally:
        if extra_engine_e1.volume_exists(source):
            extra_engine_e1.client.volumes.get(source).remove(force=True)


def test_a_copy_to_a_host_reached_over_tls(extra_engine_e2, host_workers, celery_worker, make_user):
    from hosts.services import host_save

    source = dockercli.create_volume()
    dockercli.fill_volume(source, CONTENT)
    expected = _tree_here(source)
    mirror_sync()
    host_save(name="e2", actor_name="test", **extra_engine_e2.host_fields())  # tcp:// with TLS client certificates
    host_workers("e2", watcher=False)
    wait_for(lambda: Host.objects.get(name="e2").online, timeout=30, message="e2's heartbeat")
    try:
        transfer = _transfer_and_wait(source, "e2", remove=False, user=make_user("Admin"))
        progress = transfers.transfer_progress(transfer)
        assert progress.phase == transfers.DONE, progress.message
        assert extra_engine_e2.tree(source).strip() == expected and dockercli.volume_exists(source)
    finally:
        if extra_engine_e2.volume_exists(source):
            extra_engine_e2.client.volumes.get(source).remove(force=True)
