"""What reaches the engine's archive endpoint: it sniffs the first bytes it receives and runs
the decompressor they name (xz, bzip2, gzip, zstd) as root. Whatever an archive's members
or extended headers are called, the stream Cargohold sends starts with a header of ours."""

import hashlib
import io
import tarfile

import pytest

from restores import services
from tests import dockercli
from tests.backups.engineproxy import EngineProxy
from tests.restores.conftest import listing, run_import, run_restore, store_raw_backup
from volumes import engine

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


@pytest.fixture(autouse=True)
def _engine_path(settings):
    """These tests are about the engine's archive endpoint (the fallback data path)."""
    settings.DATA_PATH = "engine"

MAGICS = {
    "gzip": b"\x1f\x8b\x08",
    "bzip2": b"BZh9",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
}


def _checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _renamed(header: bytes, name: bytes) -> bytes:
    """A header block with its name field replaced (checksum fixed)."""
    block = bytearray(header)
    block[0:100] = name[:100].ljust(100, b"\0")
    return _checksum(block)


def crafted_tar(magic: bytes, where: str) -> tuple[bytes, dict]:
    """A tar whose first 512 bytes start with `magic`, and what it should put in a volume."""
    content = b"hello from a hostile archive\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        root = "." if where == "dot-pax" else "data"
        d = tarfile.TarInfo(root)
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_000_000_000
        # A pax record makes tarfile write an extended header first, whose own name we rename.
        d.pax_headers = {"comment": "x" * 10}
        tf.addfile(d)
        prefix = "./" if where == "dot-pax" else "data/"
        f = tarfile.TarInfo(prefix + "note.txt")
        f.size, f.mode, f.mtime = len(content), 0o640, 1_000_000_000
        tf.addfile(f, io.BytesIO(content))
    raw = bytearray(buf.getvalue())
    if where in ("data-pax", "dot-pax"):
        assert raw[156:157] == b"x"
        raw[0:512] = _renamed(raw[0:512], magic + b"/PaxHeader/data")
    elif where == "longname":
        # A GNU long-name header (its own name is free text) in front of the first member.
        long_name = b"data/" + b"d" * 120 + b"\0"
        meta = bytearray(512)
        meta[0:len(magic) + 4] = magic + b"long"
        meta[100:108], meta[108:116], meta[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
        meta[124:136] = b"%011o\0" % len(long_name)
        meta[136:148] = b"00000000000\0"
        meta[156:157] = b"L"
        meta[257:265] = b"ustar  \0"
        extra = tarfile.TarInfo("data/placeholder")
        extra.type, extra.mode, extra.mtime = tarfile.DIRTYPE, 0o700, 1_000_000_000
        member = extra.tobuf(format=tarfile.USTAR_FORMAT)
        raw[0:0] = _checksum(meta) + long_name.ljust(512, b"\0") + member
    return bytes(raw), {"./note.txt": content}


@pytest.fixture
def recording_engine(settings, tmp_path):
    proxy = EngineProxy(str(tmp_path / "engine.sock")).start()
    proxy.record = True
    settings.DOCKER_HOST = proxy.url
    engine.reset_client()
    yield proxy
    engine.reset_client()
    proxy.close()


def _assert_ours(proxy: EngineProxy) -> None:
    from tarstream import LEAD_HEADER

    uploads = proxy.archive_uploads()
    assert uploads, "no archive reached the engine"
    for body in uploads:
        assert body[:512] == LEAD_HEADER
        assert not any(body.startswith(m[:2]) for m in MAGICS.values())


def _files(volume: str) -> dict:
    entries = listing(volume)["entries"]
    return {name: e.get("sha256") for name, e in entries.items() if e["mode"].startswith("81")}


@pytest.mark.parametrize("where", ["data-pax", "dot-pax", "longname"])
@pytest.mark.parametrize("magic", list(MAGICS))
def test_a_restore_starts_with_our_header_whatever_the_archive_names(
        no_enqueue, backup_root, recording_engine, magic, where):
    raw, expected = crafted_tar(MAGICS[magic], where)
    assert raw.startswith(MAGICS[magic])
    backup = store_raw_backup("hostile", raw, compression="gzip")
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "succeeded", restore.error
    _assert_ours(recording_engine)
    files = _files(target)
    assert files == {name: hashlib.sha256(data).hexdigest() for name, data in expected.items()}


@pytest.mark.parametrize("magic", list(MAGICS))
def test_an_import_whose_pax_header_starts_with_a_magic_restores_exactly(
        no_enqueue, backup_root, recording_engine, tmp_path, magic):
    raw, expected = crafted_tar(MAGICS[magic], "data-pax")
    path = tmp_path / "hostile.tar"
    path.write_bytes(raw)  # plain tar: its first bytes are the magic itself
    backup = run_import(path, "hostile-import")
    assert backup.status == "succeeded", backup.error
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "succeeded", restore.error
    _assert_ours(recording_engine)
    assert _files(target) == {name: hashlib.sha256(data).hexdigest() for name, data in expected.items()}


@pytest.mark.parametrize("magic", list(MAGICS))
def test_a_member_named_like_a_magic_is_refused_and_nothing_reaches_the_engine(
        no_enqueue, backup_root, recording_engine, magic):
    info = tarfile.TarInfo("x")
    info.size = 3
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b"abc"))
    raw = bytearray(buf.getvalue())
    raw[0:512] = _renamed(raw[0:512], MAGICS[magic] + b"name")
    backup = store_raw_backup("hostile", bytes(raw), compression="gzip")
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed" and "do not share one root" in restore.error, restore.error
    assert recording_engine.archive_uploads() == []
    assert not dockercli.volume_exists(target)
