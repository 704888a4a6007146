"""Restores give back what the volume held, on both data paths (GNU tar in the data
helper, and the engine's archive endpoint as the fallback), from the same rich volume;
the job says which path ran."""

import pytest

from restores import services
from tests import dockercli
from tests.backups.fidelity import fill_rich, mountpoint, snapshot
from tests.restores.conftest import run_backup_now, run_restore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

BASIC = ("mode", "uid", "gid", "target", "sha", "links", "mtime", "cap")


@pytest.mark.parametrize("path,channel", [("helper", "fifo"), ("helper", "attach"), ("engine", "auto")])
def test_a_round_trip_keeps_owners_links_xattrs_acls_times_and_holes(
        path, channel, settings, no_enqueue, backup_root, make_volume, make_user):
    settings.DATA_PATH = path
    settings.DATA_CHANNEL = channel  # both ways: the backup's and the restore's data channel
    source = make_volume("true")
    fill_rich(mountpoint(source))
    original = snapshot(mountpoint(source))
    backup = run_backup_now(source)
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target, user=make_user("Operator")))

    assert restore.status == "succeeded", restore.error
    assert restore.job.result["data_path"] == path
    if path == "helper":
        assert restore.job.result["data_channel"] == channel and "Data channel: " in restore.job.log
    restored = snapshot(mountpoint(target))
    assert {k: {f: v for f, v in e.items() if f in BASIC} for k, e in restored.items()} == \
        {k: {f: v for f, v in e.items() if f in BASIC} for k, e in original.items()}
    assert restored[b"capable"]["cap"] and restored[b"capable"]["mode"] & 0o4000
    if path == "helper":
        assert restored == original  # user.* xattrs, ACLs, nanosecond mtimes, holes too
    else:
        # Neither dockerd's tar writer nor its reader keeps these: the fallback loses them.
        assert restored[b"dir/text.txt"]["xattrs"] != original[b"dir/text.txt"]["xattrs"]
