"""Restores through the data channel (the worker writes the FIFO, the helper's tar reads
it), against the real engine. A cancel mid-write on either channel is
tests/restores/test_restore_new.py's."""

import os

import pytest

from restores import services
from tests import dockercli
from tests.restores.conftest import run_backup_now, run_restore
from volumes import datahelper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


@pytest.fixture
def channel_dir(settings, tmp_path):
    settings.DATA_CHANNEL_DIR = tmp_path / "channels"
    datahelper.data_channel_forget()
    yield settings.DATA_CHANNEL_DIR
    datahelper.data_channel_forget()


def leftovers(channel_dir) -> list[str]:
    return sorted(os.listdir(channel_dir)) if channel_dir.exists() else []


def listing(volume: str) -> str:
    return dockercli.docker("run", "--rm", "-v", f"{volume}:/data:ro", "busybox:stable", "sh", "-c",
                            "cd /data && find . | sort && cat $(find . -type f | sort) | md5sum")


def test_a_restore_in_place_writes_through_the_fifo_and_says_so(
        settings, no_enqueue, backup_root, channel_dir, volume_with_files, make_user):
    volume = volume_with_files()
    before = listing(volume)
    backup = run_backup_now(volume)
    dockercli.fill_volume(volume, "rm -rf /data/* && echo changed > /data/c")

    restore = run_restore(services.restore_in_place_start(backup=backup, confirm_name=volume,
                                                          user=make_user("Admin")))

    assert restore.status == "succeeded", restore.error
    assert restore.job.result["data_channel"] == "fifo" and "Data channel: FIFO beside the engine" in restore.job.log
    assert listing(volume) == before
    assert leftovers(channel_dir) == []
