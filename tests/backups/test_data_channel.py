"""The data channel between the data helper and the worker (volumes.datahelper): a FIFO
in a private folder beside the engine when that works, the engine's attach stream
otherwise; against the real engine, one behaviour each."""

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backups import datapath, services
from backups.models import Backup
from backups.storage import get_storage
from jobs.models import Job
from jobs.services import job_request_cancel
from tests import dockercli
from tests.backups.conftest import run_backup
from tests.conftest import wait_for
from volumes import datahelper, engine

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def channel_dir(settings, tmp_path):
    """A fresh DATA_CHANNEL_DIR, probed again."""
    settings.DATA_CHANNEL_DIR = tmp_path / "channels"
    datahelper.data_channel_forget()
    yield settings.DATA_CHANNEL_DIR
    datahelper.data_channel_forget()


def leftovers(channel_dir: Path) -> list[str]:
    return sorted(os.listdir(channel_dir)) if channel_dir.exists() else []


def helpers_of(job_id: int) -> list[str]:
    return dockercli.docker("ps", "-aq", "--filter", f"label=cargohold.job={job_id}").split()


def run_in_thread(backup) -> threading.Thread:
    runner = threading.Thread(target=run_backup, args=(backup,), daemon=True)
    runner.start()
    return runner


def test_a_backup_beside_the_engine_goes_through_a_fifo_says_so_and_leaves_no_folder(
        settings, no_enqueue, backup_root, channel_dir, volume_with_files):
    name = volume_with_files()

    backup = run_backup(services.backup_start(volume_name=name))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    job = Job.objects.get(pk=backup.job_id)
    assert job.result["data_path"] == "helper" and job.result["data_channel"] == "fifo"
    assert "Data channel: FIFO beside the engine" in job.log
    assert leftovers(channel_dir) == []
    settings.DATA_CHANNEL = "attach"
    again = run_backup(services.backup_start(volume_name=name))
    assert Job.objects.get(pk=again.job_id).result["data_channel"] == "attach"
    assert (backup.sha256, backup.file_count, backup.verified) == (again.sha256, again.file_count, True)


def test_the_helper_on_the_fifo_keeps_its_confinement_and_its_mount_holds_only_the_fifo(
        settings, channel_dir, volume_with_files):
    name = volume_with_files()
    image = datahelper.data_helper_image()
    script = ("ls -A /chan >&2; touch /chan/other 2>/dev/null && echo WROTE >&2; "
              "wget -q -T 2 http://127.0.0.1:1/ 2>/dev/null && echo NETWORK >&2; echo data > {target}")
    with datahelper.data_helper(name, image=image, read_only=True, caps=datahelper.READ_CAPS, purpose="test",
                                channel=datahelper.OUT,
                                command=lambda target: ["/bin/sh", "-c", script.format(target=target)]) as helper:
        assert helper.channel == "fifo"
        facts = json.loads(dockercli.docker("inspect", helper.container_id))[0]
        [folder] = [Path(channel_dir) / entry for entry in leftovers(channel_dir)]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and os.listdir(folder) == ["out"]
        assert stat.S_ISFIFO((folder / "out").stat().st_mode) and stat.S_IMODE((folder / "out").stat().st_mode) == 0o600
        got = b"".join(helper.output())
        assert helper.finish() == 0

    host = facts["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == ["CAP_DAC_READ_SEARCH"] or host["CapAdd"] == ["DAC_READ_SEARCH"]
    assert "no-new-privileges" in host["SecurityOpt"] and not facts["Config"]["OpenStdin"]
    [chan] = [m for m in facts["Mounts"] if m["Destination"] == "/chan"]
    assert chan["Type"] == "bind" and chan["RW"] is False and chan["Source"] == str(folder)
    assert got == b"data\n"
    assert helper.messages().split() == ["out"]  # nothing else in the folder, nothing written, no network
    assert leftovers(channel_dir) == []


def test_when_the_probe_fails_a_backup_falls_back_to_the_attach_stream_and_says_so(
        settings, no_enqueue, backup_root, channel_dir, volume_with_files, tmp_path, caplog):
    # The worker cannot make its folder there (a file is in the way): the probe fails.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.DATA_CHANNEL_DIR = blocker / "channels"
    name = volume_with_files()

    backup = run_backup(services.backup_start(volume_name=name))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    job = Job.objects.get(pk=backup.job_id)
    assert job.result["data_channel"] == "attach" and "Data channel: the engine's attach stream" in job.log
    assert "a FIFO beside the engine does not work here" in caplog.text


def test_a_forced_fifo_that_does_not_work_fails_the_backup_with_the_reason(
        settings, no_enqueue, backup_root, channel_dir, volume_with_files, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.DATA_CHANNEL_DIR = blocker / "channels"
    settings.DATA_CHANNEL = "fifo"
    name = volume_with_files()

    backup = run_backup(services.backup_start(volume_name=name))

    assert backup.status == Backup.Status.FAILED
    assert "DATA_CHANNEL is 'fifo' but a FIFO beside the engine does not work here" in backup.error
    assert list(get_storage().list_keys()) == []


def test_forcing_attach_never_makes_a_folder(settings, no_enqueue, backup_root, channel_dir, volume_with_files):
    settings.DATA_CHANNEL = "attach"
    name = volume_with_files()

    backup = run_backup(services.backup_start(volume_name=name))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert Job.objects.get(pk=backup.job_id).result["data_channel"] == "attach"
    assert not Path(channel_dir).exists()


PROBE_IN_OWN_NAMESPACE = """
import os, sys, django
sys.path.insert(0, {root!r})
os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
django.setup()
from volumes import datahelper
from volumes.engine import EngineError
image = datahelper.data_helper_image()
try:
    print("channel:", datahelper.data_channel(image))
except EngineError as exc:
    print("error:", exc)
from volumes import datachannel
print("why:", list(datachannel._channels.values())[0][1])
"""


@pytest.mark.parametrize("mode", ["auto", "fifo"])
def test_a_worker_whose_folder_the_engine_does_not_see_probes_and_falls_back(mode, channel_dir, tmp_path):
    """As a worker in a container: its channel folder (here a tmpfs in its own mount
    namespace) has the path of a folder on the engine's host, but is not that folder."""
    Path(channel_dir).mkdir(parents=True)
    env = dict(os.environ, CARGOHOLD_DATA_CHANNEL_DIR=str(channel_dir), CARGOHOLD_DATA_CHANNEL=mode)
    script = tmp_path / "probe.py"
    script.write_text(PROBE_IN_OWN_NAMESPACE.format(root=str(ROOT)))
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs -o size=1m tmpfs '{channel_dir}' && exec '{sys.executable}' '{script}'"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout

    # Its private folder is not on the engine's host at all: the engine refuses the mount
    # (Mounts, not Binds: dockerd does not make the folder there).
    assert "bind source path does not exist" in out, out
    if mode == "auto":
        assert "channel: attach" in out
    else:
        assert "error: DATA_CHANNEL is 'fifo' but a FIFO beside the engine does not work here" in out
    assert leftovers(channel_dir) == []  # the probe's folder was only in the other namespace


def test_a_helper_that_dies_before_opening_its_fifo_fails_the_backup_clearly(
        settings, no_enqueue, backup_root, channel_dir, volume_with_files, monkeypatch):
    # A real helper that exits before its shell gets to open the FIFO.
    monkeypatch.setattr(datapath, "backup_command", lambda level, target: [
        "/bin/sh", "-c", "echo 'pzstd: cannot allocate its buffers' >&2; exit 3"])
    name = volume_with_files()
    backup = services.backup_start(volume_name=name)

    runner = run_in_thread(backup)
    runner.join(timeout=120)

    assert not runner.is_alive(), "the worker hangs on the FIFO"
    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED
    assert "The data helper ended before it opened its data channel" in backup.error
    assert "pzstd: cannot allocate its buffers" in backup.error
    assert helpers_of(backup.job_id) == [] and leftovers(channel_dir) == []
    assert list(get_storage().list_keys()) == [] and not list(Path(backup_root).rglob(".tmp-*"))


def test_a_helper_that_dies_before_opening_its_input_fifo_fails_the_write_without_a_hang(
        settings, channel_dir, volume_with_files):
    name = volume_with_files()
    image = datahelper.data_helper_image()
    dying = ["/bin/sh", "-c", "echo 'tar: no such thing' >&2; exit 2"]
    with pytest.raises(engine.EngineError, match="ended before it opened its data channel: tar: no such thing"), \
            datahelper.data_helper(name, image=image, read_only=False, caps=datahelper.WRITE_CAPS, stdin=True,
                                   purpose="test", channel=datahelper.IN, command=lambda source: dying) as helper:
        assert helper.channel == "fifo"
        helper.write(b"x" * (4 << 20))
    assert leftovers(channel_dir) == []


def test_cancel_mid_stream_on_the_fifo_kills_the_helper_and_removes_file_and_folder(
        settings, no_enqueue, backup_root, channel_dir, volume_with_files):
    settings.JOB_HEARTBEAT_SECONDS = 0.05
    settings.BACKUP_ZSTD_LEVEL = 19  # slow on purpose: the stream lasts long enough to cancel it
    name = volume_with_files("seq 1 12000000 > /data/numbers.txt")
    backup = services.backup_start(volume_name=name)

    runner = run_in_thread(backup)
    try:
        wait_for(lambda: Job.objects.get(pk=backup.job_id).progress_done > 0, timeout=120, interval=0.05,
                 message="the first compressed bytes")
        job = Job.objects.get(pk=backup.job_id)
        assert "Data channel: FIFO" in job.log
        job_request_cancel(job=job)
    finally:
        runner.join(timeout=120)

    assert not runner.is_alive()
    backup.refresh_from_db()
    assert backup.status == Backup.Status.CANCELLED, backup.error
    assert helpers_of(backup.job_id) == [] and leftovers(channel_dir) == []
    assert list(get_storage().list_keys()) == [] and not list(Path(backup_root).rglob(".tmp-*"))
