"""Decompression bombs and full disks: the check pass counts what an archive expands to and
refuses, before anything is written, more than its record (own archives), more than the
import limits (uploads), or more than the volume's file system has free."""

import io
import os
import tarfile

import pytest
import zstandard
from django.core.management import CommandError, call_command

from backups import imports
from backups.models import Backup
from backups.storage import get_storage
from project.errors import Refused
from restores import services
from tests import dockercli
from tests.restores.conftest import run_import, run_restore, store_raw_backup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

MiB = 1 << 20


def write_bomb(path, zeros: int) -> int:
    """A tar.zst holding one file of `zeros` zero bytes: a few KiB on disk."""
    def header(name, kind=tarfile.REGTYPE, size=0):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mtime = kind, size, 1_000_000_000
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        return info.tobuf(format=tarfile.PAX_FORMAT)

    comp = zstandard.ZstdCompressor(level=1).compressobj()
    with open(path, "wb") as out:
        out.write(comp.compress(header("data", tarfile.DIRTYPE) + header("data/zeros", size=zeros)))
        chunk = bytes(MiB)
        for _ in range(zeros // MiB):
            out.write(comp.compress(chunk))
        out.write(comp.compress(bytes(zeros % MiB + (-zeros % 512) + 1024)))
        out.write(comp.flush())
    return os.path.getsize(path)


def one_file_tar(payload: bytes) -> bytes:
    """data/ and one file data/file.bin holding `payload`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("data")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        info = tarfile.TarInfo("data/file.bin")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _stored_keys():
    return [k for k in get_storage().list_keys()]


def test_a_small_bomb_upload_is_refused_with_the_numbers_and_nothing_is_stored(no_enqueue, backup_root, tmp_path):
    path = tmp_path / "bomb.tar.zst"
    size = write_bomb(path, 300 * MiB)
    assert size < 64 * 1024

    backup = run_import(path, "bomb")

    assert backup.status == "failed"
    assert "expands to more than 268435456 bytes (256.0 MiB)" in backup.error, backup.error
    assert "An Admin can raise the limit" in backup.error
    assert _stored_keys() == []
    # Refused at the member's header: the 300 MiB were never decompressed.
    assert backup.job.progress_done <= size


def test_the_ratio_limits_a_bigger_upload(no_enqueue, backup_root, tmp_path, settings):
    settings.IMPORT_EXPANSION_FREE_BYTES = 1024
    settings.IMPORT_MAX_EXPANSION_RATIO = 50
    path = tmp_path / "bomb.tar.zst"
    size = write_bomb(path, 20 * MiB)

    backup = run_import(path, "bomb")

    assert backup.status == "failed"
    assert f"50 times its compressed size of {size} bytes" in backup.error, backup.error


def test_the_absolute_cap_holds_whatever_the_ratio(no_enqueue, backup_root, tmp_path, settings):
    settings.IMPORT_MAX_EXPANDED_BYTES = 2 * MiB
    path = tmp_path / "data.tar"
    path.write_bytes(one_file_tar(os.urandom(3 * MiB)))

    backup = run_import(path, "capped")

    assert backup.status == "failed"
    assert "IMPORT_MAX_EXPANDED_BYTES" in backup.error, backup.error


def test_an_admin_raises_the_limit_for_one_import(no_enqueue, backup_root, tmp_path, make_user):
    path = tmp_path / "bomb.tar.zst"
    write_bomb(path, 300 * MiB)

    backup = run_import(path, "allowed", user=make_user("Admin"), max_expanded_bytes=1 << 30)

    assert backup.status == "succeeded", backup.error
    assert backup.data_bytes == 300 * MiB
    # The next import of the same file gets the usual limits again.
    assert run_import(path, "again").status == "failed"


def test_an_operator_cannot_raise_the_limit(no_enqueue, backup_root, tmp_path, make_user):
    path = tmp_path / "bomb.tar.zst"
    write_bomb(path, 300 * MiB)

    with pytest.raises(Refused, match="does not allow raising the expansion limit"):
        imports.import_start(source=path, volume_name="nope", staged=False, trigger="cli",
                             user=make_user("Operator"), max_expanded_bytes=1 << 30)
    assert not Backup.objects.exists()


def test_the_cli_flag_raises_the_limit(no_enqueue, backup_root, tmp_path, capsys):
    path = tmp_path / "bomb.tar.zst"
    write_bomb(path, 300 * MiB)

    with pytest.raises(CommandError, match="expands to more than"):
        call_command("import_archive", str(path), "--volume-name", "cli-bomb")
    call_command("import_archive", str(path), "--volume-name", "cli-bomb", "--max-expanded-gib", "1")
    backup = Backup.objects.get(pk=int(capsys.readouterr().out.strip()))
    assert backup.status == "succeeded" and backup.data_bytes == 300 * MiB


def test_an_archive_larger_than_its_record_is_refused_before_a_volume_exists(no_enqueue, backup_root):
    backup = store_raw_backup("grown", one_file_tar(bytes(2 * MiB)))
    Backup.objects.filter(pk=backup.pk).update(bytes_read=64 * 1024)  # the record says 64 KiB
    backup.refresh_from_db()
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed"
    assert f"expands to more than 65536 bytes (64.0 KiB), the size recorded for backup #{backup.pk}" in restore.error
    assert "No volume was created." in restore.error
    assert not dockercli.volume_exists(target)


def test_a_restore_that_does_not_fit_the_volume_is_refused_with_the_numbers(no_enqueue, backup_root):
    backup = store_raw_backup("too-big", one_file_tar(os.urandom(3 * MiB)))
    target = dockercli.unique_name("small")

    # A tmpfs volume of 1 MiB: the engine's own file system reports how little is free.
    restore = run_restore(services.restore_new_start(
        backup=backup, volume_name=target, driver="local",
        options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}))

    assert restore.status == "failed"
    assert f"holds {3 * MiB} bytes (3.0 MiB) of file data" in restore.error, restore.error
    assert "has 1048576 bytes (1.0 MiB) free; nothing was written." in restore.error
    assert not dockercli.volume_exists(target)
