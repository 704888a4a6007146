"""Restores into a new volume, run by the real handler against the real engine."""

import calendar
import os
import tarfile
import time

import pytest

from accounts.models import AuditEvent
from backups.storage import get_storage
from restores import services
from restores.models import Restore
from tests import dockercli
from tests.restores.conftest import listing, member, run_backup_now, run_restore, store_crafted_backup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


def utc(text: str) -> str:
    """Seconds since the epoch of a UTC time, as `stat -c %Y` prints it."""
    return str(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


def test_a_round_trip_gives_back_exactly_the_backed_up_content(no_enqueue, backup_root, make_volume, make_user):
    source = make_volume(labels={"app": "shop", "tier": "db"})
    before = listing(source)
    backup = run_backup_now(source)
    user = make_user("Operator")
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target, user=user))

    assert restore.status == "succeeded", restore.error
    assert restore.job.status == "succeeded"
    after = listing(target)
    assert after["entries"] == before["entries"]
    # Spot checks of what the comparison covers, so a listing that lost a field fails loudly.
    e = after["entries"]
    assert e["./suid"]["mode"] == "89ed" and e["./sgid"]["mode"] == "85c9"  # setuid 4755, setgid 2711
    assert e["./sticky"]["mode"] == "43ff" and e["./setgid-dir"]["mode"] == "45f8"
    assert (e["./dir/rel-link"]["uid"], e["./dir/rel-link"]["gid"]) == ("77", "88")
    assert e["./dir/rel-link"]["mtime"] == utc("2001-02-03 04:05:06")
    assert e["./dir/rel-link"]["target"] == "'hello.txt'" and e["./deep/a/up-link"]["target"] == "'../../..'"
    assert e["./dir/hard1"]["links"] == ["./dir/hard1", "./dir/hello.txt", "./hard2"]
    assert e["."]["mtime"] == utc("2005-06-07 08:09:10") and (e["."]["uid"], e["."]["mode"]) == ("1000", "41e8")
    assert e["./deep/a/b/c"]["mtime"] == utc("2003-04-05 06:07:08") and e["./emptydir"]["mode"] == "41ed"
    assert e["./fifo"]["mode"] == "11a4" and e["./sparse.img"]["size"] == "33554432"
    # Driver, options and labels come from the manifest.
    inspect = dockercli.docker("volume", "inspect", "-f", "{{.Driver}} {{json .Labels}}", target)
    assert inspect.startswith("local ") and '"app":"shop"' in inspect and '"tier":"db"' in inspect
    actions = list(AuditEvent.objects.filter(object_name=target).values_list("action", "result"))
    assert ("restore_start", "ok") in actions and ("restore_finish", "ok") in actions


def test_file_capabilities_survive_but_other_extended_attributes_do_not(no_enqueue, backup_root, make_volume,
                                                                         settings):
    settings.DATA_PATH = "engine"  # the fallback's limit; the data helper keeps them (test_fidelity.py)
    source = make_volume("printf '#!/bin/sh\\n' > /data/capable && chmod 755 /data/capable")
    mountpoint = dockercli.docker("volume", "inspect", "-f", "{{.Mountpoint}}", source)
    if not os.path.isdir(mountpoint):
        pytest.skip("the volume's folder is not on this machine (remote engine)")
    capability = bytes.fromhex("0100000200040000000000000000000000000000")  # cap_net_bind_service=ep
    os.setxattr(f"{mountpoint}/capable", "security.capability", capability)
    os.setxattr(f"{mountpoint}/capable", "user.note", b"not kept")
    backup = run_backup_now(source)
    target = dockercli.unique_name("restored")
    assert run_restore(services.restore_new_start(backup=backup, volume_name=target)).status == "succeeded"
    restored = dockercli.docker("volume", "inspect", "-f", "{{.Mountpoint}}", target) + "/capable"
    assert os.getxattr(restored, "security.capability") == capability
    # The engine's archive stream carries only security.capability (documented in the README).
    assert "user.note" not in os.listxattr(restored)


@pytest.mark.parametrize("data_path", ["engine", "helper"])
def test_a_tampered_archive_is_refused_and_no_volume_is_left(data_path, settings, no_enqueue, backup_root,
                                                            make_volume):
    settings.DATA_PATH = data_path
    source = make_volume("head -c 100000 /dev/urandom > /data/blob")
    backup = run_backup_now(source)
    path = get_storage().local_path(backup.key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and restore.job.status == "failed"
    assert not dockercli.volume_exists(target)
    if data_path == "engine":  # the check pass runs first: nothing is created
        assert f"not the recorded {backup.sha256}" in restore.job.error
        assert "No volume was created." in restore.job.error
        assert restore.volume_create_requested is False
    else:
        # One pass (check and write overlapped): the helper extracted what had been checked,
        # never the last chunk; the SHA-256 (or zstd's own checksum first) stops it, and
        # the new volume is removed.
        assert ("SHA-256" in restore.job.error or "does not decompress" in restore.job.error), restore.job.error
        assert "the half-filled volume" in restore.job.error and "was removed" in restore.job.error


def test_a_manifest_that_disagrees_with_the_record_is_refused(no_enqueue, backup_root, make_volume):
    import json

    backup = run_backup_now(make_volume("echo a > /data/a"))
    manifest = get_storage().local_path(backup.key + ".manifest.json")
    data = json.loads(manifest.read_text())
    data["archive"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and "its manifest in storage gives the SHA-256 000" in restore.error
    assert not dockercli.volume_exists(target)


def test_a_truncated_archive_is_refused_even_with_a_matching_checksum(no_enqueue, backup_root, make_volume):
    # As if it was cut before it was recorded (an import, a copy gone wrong): the tar stream tells.
    import hashlib

    backup = run_backup_now(make_volume("head -c 2000000 /dev/urandom > /data/blob && echo b > /data/b"))
    path = get_storage().local_path(backup.key)
    cut = path.read_bytes()[: backup.size_bytes // 2]
    path.write_bytes(cut)
    sha = hashlib.sha256(cut).hexdigest()
    backup.sha256, backup.manifest = sha, {"archive": {"sha256": sha}}
    backup.save()
    get_storage().delete(backup.key + ".manifest.json")
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and "truncated" in restore.error, restore.error
    assert not dockercli.volume_exists(target)


def test_an_archive_that_writes_through_a_symlink_is_refused_naming_the_member(no_enqueue, backup_root):
    backup = store_crafted_backup("hostile", [
        member("data", kind=tarfile.DIRTYPE),
        member("data/escape", kind=tarfile.SYMTYPE, linkname="/"),
        member("data/escape/etc/cron.d/evil", data=b"* * * * * root sh -c 'id > /tmp/owned'\n"),
    ])
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed"
    assert "'data/escape/etc/cron.d/evil' passes through the symlink 'data/escape'" in restore.error
    assert not dockercli.volume_exists(target)


def test_a_dot_root_archive_is_restored_with_names_rewritten(no_enqueue, backup_root):
    backup = store_crafted_backup("dotted", [
        member(".", kind=tarfile.DIRTYPE),
        member("./f", mode=0o4755, uid=1234, gid=4321),
        member("./h", kind=tarfile.LNKTYPE, linkname="./f", mode=0o4755, uid=1234, gid=4321),
        member("./d", kind=tarfile.DIRTYPE),
        member("./d/s", kind=tarfile.SYMTYPE, linkname="../f", uid=7),
    ], compression="gzip")
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "succeeded", restore.error
    assert restore.layout == "dot"
    e = listing(target)["entries"]
    assert set(e) == {".", "./f", "./h", "./d", "./d/s"}
    # The hardlinked setuid file keeps its mode (the engine would drop it for ./ names).
    assert e["./h"]["mode"] == "89ed" and e["./h"]["links"] == ["./f", "./h"] and e["./f"]["uid"] == "1234"
    assert e["./d/s"]["target"] == "'../f'" and e["./d/s"]["uid"] == "7"
    assert e["."]["mtime"] == "1000000000"


def test_a_write_that_fails_removes_the_half_filled_volume(no_enqueue, backup_root, make_volume):
    # A real "disk full": the new volume is a 1 MiB tmpfs, the backup holds 3 MiB.
    backup = run_backup_now(make_volume("head -c 3000000 /dev/urandom > /data/big && echo small > /data/small"))
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(
        backup=backup, volume_name=target, options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
    ))

    assert restore.status == "failed", restore.outcome
    assert "the half-filled volume" in restore.error and "was removed" in restore.error
    assert restore.volume_create_requested and restore.partial is False
    assert not dockercli.volume_exists(target)
    assert AuditEvent.objects.filter(action="restore_finish", object_name=target, result="error").exists()


def test_the_name_must_be_valid_and_free(no_enqueue, backup_root, make_volume):
    from project.errors import Refused

    source = make_volume("echo a > /data/a")
    backup = run_backup_now(source)
    for name, message in [("-bad", "not a valid volume name"), ("a", "not a valid volume name"),
                          ("ok\n", "not a valid volume name"), (source, "already exists")]:
        with pytest.raises(Refused, match=message):
            services.restore_new_start(backup=backup, volume_name=name)
    assert Restore.objects.count() == 0
    assert AuditEvent.objects.filter(action="restore_start", result="error").count() == 4


def test_a_volume_created_meanwhile_on_the_engine_is_not_touched(no_enqueue, backup_root, make_volume):
    backup = run_backup_now(make_volume("echo a > /data/a"))
    target = dockercli.unique_name("restored")
    restore = services.restore_new_start(backup=backup, volume_name=target)
    dockercli.create_volume(target)
    dockercli.fill_volume(target, "echo mine > /data/mine")

    restore = run_restore(restore)

    assert restore.status == "failed" and "already exists on the engine" in restore.error
    assert set(listing(target)["entries"]) == {".", "./mine"}


def test_a_redacted_driver_option_must_be_typed_again(no_enqueue, backup_root, make_volume):
    from project.errors import Refused

    backup = run_backup_now(make_volume("echo a > /data/a"))
    backup.manifest["volume"]["options"] = {"type": "cifs", "o": "username=u,password=***"}
    backup.save()
    with pytest.raises(Refused, match="o was not stored in the backup"):
        services.restore_new_start(backup=backup, volume_name=dockercli.unique_name("r"))


def test_a_restore_refused_while_another_job_holds_the_volume(no_enqueue, backup_root, make_volume, settings):
    from datetime import timedelta

    from jobs.locks import lock_acquire, volume_lock

    settings.BACKUP_LOCK_WAIT_SECONDS = 0
    backup = run_backup_now(make_volume("echo a > /data/a"))
    target = dockercli.unique_name("restored")
    restore = services.restore_new_start(backup=backup, volume_name=target)
    lock_acquire(resource=volume_lock(target), owner="job 999 (backup) on elsewhere", ttl=timedelta(minutes=5))

    restore = run_restore(restore)

    assert restore.status == "failed" and "volume:" in restore.error and "job 999 (backup) on elsewhere" in restore.error
    assert not dockercli.volume_exists(target)


@pytest.mark.parametrize("channel", ["attach", "fifo"])
def test_cancelling_mid_write_removes_the_new_volume(channel, no_enqueue, backup_root, settings, tmp_path):
    import os
    import threading

    from volumes import datahelper

    # The runner reads the cancel flag on each heartbeat: beat often, so the request is
    # seen while the (fast, all-zero) write is still going.
    settings.JOB_HEARTBEAT_SECONDS = 0.05
    # Both data channels: the engine's attach stream, and the FIFO beside the engine (a
    # worker blocked writing a FIFO nobody reads must still see the cancel).
    settings.DATA_CHANNEL, settings.DATA_CHANNEL_DIR = channel, tmp_path / "channels"
    datahelper.data_channel_forget()

    from jobs.models import Job
    from jobs.runner import job_perform
    from jobs.services import job_request_cancel
    from tests.conftest import wait_for
    from tests.restores.conftest import store_zero_backup

    backup = store_zero_backup("zeros", 1536 << 20)
    target = dockercli.unique_name("restored")
    restore = services.restore_new_start(backup=backup, volume_name=target)
    thread = threading.Thread(target=job_perform, args=(restore.job_id,), daemon=True)
    thread.start()
    try:
        def writing():
            restore.refresh_from_db()
            return restore.phase == "writing" and Job.objects.get(pk=restore.job_id).progress_done > 0
        wait_for(writing, timeout=60, interval=0.05, message="the restore to write")
        job_request_cancel(job=Job.objects.get(pk=restore.job_id))
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive(), "the worker hangs on the data channel"
    restore.refresh_from_db()
    assert restore.status == "cancelled" and restore.job.status == "cancelled" and not restore.written_at
    assert "was removed" in restore.outcome and not dockercli.volume_exists(target)
    assert f"Data channel: {datahelper.CHANNEL_LABELS[channel]}" in restore.job.log
    assert dockercli.docker("ps", "-aq", "--filter", f"label=cargohold.job={restore.job_id}") == ""
    channels = settings.DATA_CHANNEL_DIR
    assert not channels.exists() or os.listdir(channels) == []
    datahelper.data_channel_forget()


def test_a_restore_cancelled_while_queued_ends_once_through_its_kind(no_enqueue, backup_root, make_volume):
    """The restore has no status of its own: the job's cancel is its end, and the kind's
    on_end (the runner calls it when the message arrives) audits it once and drops the
    secrets of its driver options."""
    from jobs.runner import job_perform
    from jobs.services import job_request_cancel

    backup = run_backup_now(make_volume("echo a > /data/a"))
    restore = services.restore_new_start(backup=backup, volume_name=dockercli.unique_name("r"),
                                         options={"type": "tmpfs", "o": "size=1m,password=hunter2"})
    assert Restore.objects.filter(pk=restore.pk, status="queued").exists()
    job_request_cancel(job=restore.job)

    assert job_perform(restore.job_id) is None  # nothing to run: it ended before it started
    job_perform(restore.job_id)  # a second delivery ends nothing twice
    restore.refresh_from_db()
    assert restore.status == "cancelled" and restore.error == "Cancelled before it started."
    assert Restore.objects.ended().filter(pk=restore.pk).exists() and not restore.is_active
    assert "hunter2" not in str(restore.options) and restore.partial is False
    finish = AuditEvent.objects.filter(action="restore_finish", params__restore=restore.pk)
    assert finish.count() == 1 and finish.get().params["status"] == "cancelled"
