"""What crosses the data channel of the data helper: on the FIFO beside the engine the
uncompressed tar (a restore sends what the worker decompressed and checked, a backup
gets the helper's raw tar and compresses it in the worker: zstd runs once per byte);
on the attach stream the compressed bytes (they may travel through a network). Against
the real engine; the job says which form ran."""

import hashlib
import io
import tarfile

import pytest
import zstandard

from backups.storage import get_storage, manifest_key
from restores import services
from tests import dockercli
from tests.restores.conftest import listing, run_backup_now, run_restore
from volumes import datahelper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

CONTENT = (
    "mkdir -p /data/dir && head -c 3000000 /dev/urandom > /data/dir/random.bin && "
    "yes cargohold | head -c 2000000 > /data/dir/text.txt && echo b > /data/b && "
    "chown 1234:4321 /data/b && chmod 0640 /data/b"
)


@pytest.fixture
def channel(request, settings, tmp_path):
    settings.DATA_CHANNEL, settings.DATA_CHANNEL_DIR = request.param, tmp_path / "channels"
    datahelper.data_channel_forget()
    yield request.param
    datahelper.data_channel_forget()


def stored_tar(backup) -> bytes:
    with get_storage().open_reader(backup.key) as raw:
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read()


def store_over(backup, packed: bytes, *, record: bool) -> None:
    """Replace a backup's stored archive by `packed`; `record`: record its checksum too
    (row and manifest), so only the tar's own content can tell."""
    path = get_storage().local_path(backup.key)
    path.write_bytes(packed)
    if record:
        sha = hashlib.sha256(packed).hexdigest()
        backup.sha256, backup.size_bytes = sha, len(packed)
        backup.manifest = {**(backup.manifest or {}), "archive": {**backup.manifest["archive"], "sha256": sha}}
        backup.save()
        get_storage().delete(manifest_key(backup.key))


def with_member_added(tar: bytes, name: str = "data/added.txt", data: bytes = b"not in the volume\n") -> bytes:
    """The same tar with one more member before its end marker."""
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        tf.getmembers()
        end = tf.offset  # just after the last member: the end marker starts here
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_000_000_000, 0o644
    padding = b"\0" * (-len(data) % 512)
    return tar[:end] + info.tobuf(format=tarfile.PAX_FORMAT) + data + padding + b"\0" * 1024


def test_the_default_sends_the_checked_tar_to_a_restore(settings):
    assert settings.RESTORE_FIFO_FORM == "tar"


@pytest.mark.parametrize("channel,form", [("fifo", "tar"), ("attach", "zstd")], indirect=["channel"])
def test_a_restore_into_a_new_volume_sends_the_checked_tar_on_the_fifo_and_zstd_on_the_attach_stream(
        channel, form, no_enqueue, backup_root, make_volume):
    source = make_volume(CONTENT)
    backup = run_backup_now(source)
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "succeeded", restore.error
    result = restore.job.result
    assert (result["single_pass"], result["data_channel"], result["data_form"]) == (True, channel, form)
    expected = "tar -x only" if form == "tar" else "zstd -dc | tar -x"
    assert "Data sent to the helper: " in restore.job.log and expected in restore.job.log
    assert listing(target)["entries"] == listing(source)["entries"]


@pytest.mark.parametrize("channel", ["fifo"], indirect=True)
def test_bytes_flipped_late_in_the_stored_archive_leave_no_new_volume_and_say_why(
        channel, no_enqueue, backup_root, make_volume):
    backup = run_backup_now(make_volume(CONTENT))
    path = get_storage().local_path(backup.key)
    data = bytearray(path.read_bytes())
    data[len(data) - 200] ^= 0x40  # inside the last zstd frame
    path.write_bytes(bytes(data))
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and restore.job.result["data_form"] == "tar"
    error = restore.job.error
    assert "SHA-256" in error or "does not decompress" in error, error
    assert "was removed" in error and not dockercli.volume_exists(target)


@pytest.mark.parametrize("channel", ["fifo"], indirect=True)
def test_a_member_added_to_the_archive_never_reaches_the_helper_whole_and_leaves_no_volume(
        channel, no_enqueue, backup_root, make_volume, monkeypatch):
    # A well-formed archive (it decompresses, every member passes the checks) whose bytes
    # are not those recorded: only the SHA-256 at the end tells, so the helper must have
    # been given everything but the held-back end.
    backup = run_backup_now(make_volume(CONTENT))
    tampered = with_member_added(stored_tar(backup))
    store_over(backup, zstandard.ZstdCompressor(level=3).compress(tampered), record=False)
    sent = []
    write = datahelper.DataHelper.write
    monkeypatch.setattr(datahelper.DataHelper, "write",
                        lambda self, data: (sent.append(bytes(data)), write(self, data))[1])
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and restore.job.result["data_form"] == "tar"
    assert f"not the recorded {backup.sha256}" in restore.job.error, restore.job.error
    assert "was removed" in restore.job.error and not dockercli.volume_exists(target)
    given = b"".join(sent)
    assert given and tampered.startswith(given) and len(given) < len(tampered)
    assert b"\0" * 1024 not in given[-1024:]  # no end marker: GNU tar never finished


@pytest.mark.parametrize("channel", ["fifo"], indirect=True)
def test_a_member_added_with_a_matching_checksum_is_refused_by_the_file_count(
        channel, no_enqueue, backup_root, make_volume):
    backup = run_backup_now(make_volume(CONTENT))
    store_over(backup, zstandard.ZstdCompressor(level=3).compress(with_member_added(stored_tar(backup))),
               record=True)
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and restore.job.result["data_form"] == "tar"
    assert f"files; {backup.file_count} were recorded" in restore.job.error, restore.job.error
    assert not dockercli.volume_exists(target)
