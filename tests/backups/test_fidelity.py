"""Backups keep what the volume holds, on both data paths (the data helper next to the
data, and the engine's archive endpoint as the fallback): the archive extracts with the
host's plain GNU tar into exactly what was there."""

import subprocess
from pathlib import Path

import pytest

from backups import services
from backups.models import Backup
from jobs.models import Job
from tests.backups.conftest import run_backup
from tests.backups.fidelity import fill_rich, mountpoint, snapshot
from volumes.datahelper import CHANNEL_LABELS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


@pytest.fixture
def rich_volume(volume_with_files):
    name = volume_with_files("true")
    fill_rich(mountpoint(name))
    return name


def extract_on_host(archive: Path, target: Path) -> None:
    target.mkdir()
    subprocess.run(
        f"zstd -d -c '{archive}' | tar --numeric-owner --xattrs --xattrs-include='*' --acls -xpf - -C '{target}'",
        shell=True, check=True,
    )


@pytest.mark.parametrize("path,channel", [("helper", "fifo"), ("helper", "attach"), ("engine", "auto")])
def test_a_backup_extracts_with_host_tar_into_what_the_volume_holds(
        path, channel, settings, no_enqueue, backup_root, rich_volume, tmp_path):
    settings.DATA_PATH = path
    settings.DATA_CHANNEL = channel  # the helper's data channel (volumes.datahelper.data_channel)

    backup = run_backup(services.backup_start(volume_name=rich_volume))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    job = Job.objects.get(pk=backup.job_id)
    assert job.result["data_path"] == path
    if path == "helper":
        assert job.result["data_channel"] == channel and f"Data channel: {CHANNEL_LABELS[channel]}" in job.log
    extract_on_host(Path(backup.location), tmp_path / "out")
    original = snapshot(mountpoint(rich_volume))
    restored = snapshot(tmp_path / "out" / "data")
    basic = {k: {f: v for f, v in e.items() if f in ("mode", "uid", "gid", "target", "sha", "links", "mtime", "cap")}
             for k, e in original.items()}
    assert snapshot(tmp_path / "out" / "data", extended=False) == basic
    assert restored[b"capable"]["cap"] and b"caf\xe9-\xff.txt" in restored
    if path == "helper":
        assert restored == original  # xattrs, ACLs, nanosecond mtimes, sparseness too
        assert original[b"dir/text.txt"]["xattrs"] and "user:2001" in original[b"dir/sub/random.bin"]["acl"]
    else:
        # dockerd's tar writer loses these (the reason for the helper): the fallback says so.
        assert restored[b"dir/text.txt"]["xattrs"] != original[b"dir/text.txt"]["xattrs"]
        assert restored[b"dir/text.txt"]["mtime_ns"] != original[b"dir/text.txt"]["mtime_ns"]


def test_the_data_helper_streams_without_a_log_copy(settings, rich_volume):
    """dockerd's default log driver would also write every archive byte it relays to a
    log file on the engine's disk (the measured bottleneck of the helper path, and a copy
    of the data outside the backup folder): the helper runs with no log driver."""
    from tests import dockercli
    from volumes import datahelper

    settings.DATA_PATH = "helper"
    image = datahelper.data_helper_image()
    with datahelper.data_helper(rich_volume, image=image, command=["/bin/sh", "-c", "head -c 70000 /data/dir/text.txt"],
                                read_only=True, caps=datahelper.READ_CAPS, purpose="test") as helper:
        assert dockercli.docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", helper.container_id) == "none"
        assert sum(len(chunk) for chunk in helper.output()) > 0
        assert helper.finish() == 0
