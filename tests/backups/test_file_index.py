"""The file index: every member of a real backup, on both data paths, as `tar -tv` lists
it, with offsets that point at the member's first header; the archive is cut into zstd
frames that plain `zstd -dc | tar -x` still reads; the index is kept beside the archive
and a catalogue rescan loads it back."""

import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from backups import file_index, services
from backups.models import Backup, BackupEntry
from tarstream.frames import iter_framed
from tarstream.headers import header_checksum_ok
from tests.backups.conftest import run_backup
from tests.backups.fidelity import fill_rich, mountpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

TYPE_LETTERS = {"-": "f", "d": "d", "l": "l", "h": "h", "p": "o", "c": "o", "b": "o"}


@pytest.fixture
def rich_volume(volume_with_files):
    name = volume_with_files("true")
    root = mountpoint(name)
    fill_rich(root)
    (root / "big.bin").write_bytes(os.urandom(3 << 20))  # several 1 MiB frames
    (root / "many").mkdir()
    for i in range(30):
        (root / "many" / f"f{i:02}.txt").write_bytes(f"file {i}\n".encode() * (i * 100 + 1))
    (root / ("long-" * 40)).mkdir()
    (root / ("long-" * 40) / ("name-" * 30 + ".txt")).write_bytes(b"a long name\n")
    return name


def tar_listing(archive: Path) -> dict:
    """`tar -tv` of the archive, per path relative to the volume's root: kind, mode, owner, size, link."""
    out = subprocess.run(
        f"zstd -dc '{archive}' | tar --numeric-owner --quoting-style=literal -tvf -",
        shell=True, check=True, capture_output=True,
    ).stdout
    listing = {}
    for raw in out.split(b"\n"):
        if not raw:
            continue
        line = raw.decode("utf-8", "backslashreplace")
        perms, owner, size, _date, _time, rest = line.split(None, 5)
        kind = TYPE_LETTERS[perms[0]]
        link = ""
        if kind == "l":
            rest, link = rest.split(" -> ", 1)
        elif kind == "h":
            rest, link = rest.split(" link to ", 1)
            link = link.removeprefix("data/")
        path = rest.rstrip("/").removeprefix("data").lstrip("/")
        if not path:
            continue
        uid, gid = owner.split("/")
        listing[path] = {"kind": kind, "uid": int(uid), "gid": int(gid), "link": link,
                         "size": int(size) if kind == "f" else 0, "perms": perms[1:]}
    return listing


def index_listing(backup: Backup) -> dict:
    return {e.path: {"kind": e.kind, "uid": e.uid, "gid": e.gid, "link": e.link, "size": e.size,
                     "perms": stat.filemode(e.mode | 0o100000)[1:]}
            for e in BackupEntry.objects.filter(backup=backup)}


def tar_stream(archive: Path) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(archive.read_bytes(), read_across_frames=True).read()


@pytest.mark.parametrize("path", ["helper", "engine"])
def test_the_index_lists_what_tar_lists_with_offsets_at_each_first_header(
        path, settings, no_enqueue, backup_root, rich_volume):
    settings.DATA_PATH = path
    settings.BACKUP_FRAME_BYTES = 1 << 20

    backup = run_backup(services.backup_start(volume_name=rich_volume))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    listed = tar_listing(Path(backup.location))
    indexed = index_listing(backup)
    if path == "engine":  # dockerd's writer puts the sizes of hardlinks and sparse files its own way
        listed = {k: {**v, "perms": v["perms"][:9]} for k, v in listed.items()}
        indexed = {k: {**v, "perms": v["perms"][:9]} for k, v in indexed.items()}
    assert indexed == listed
    assert "caf\\xe9-\\xff.txt" in indexed and indexed["sparse.img"]["size"] == 64 << 20
    # Every offset is where tar itself says the member's first header (pax included) is.
    raw = tar_stream(Path(backup.location))
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        offsets = {m.name.rstrip("/").removeprefix("data").lstrip("/"): m.offset for m in tf.getmembers()}
    rows = list(BackupEntry.objects.filter(backup=backup))
    long_name = next(e for e in rows if e.name.startswith("name-name-"))
    assert len(long_name.path) > 300
    for entry in rows:
        assert header_checksum_ok(raw[entry.offset : entry.offset + 512]), entry.path
        if "\\x" not in entry.path:
            assert entry.offset == offsets[entry.path], entry.path
        parent, _, name = entry.path.rpartition("/")
        assert (entry.parent, entry.name) == (parent, name)
    sub = file_index.index_entry(backup, "dir/sub/random.bin")
    assert (sub.kind, sub.size, sub.uid, sub.gid, sub.mode) == ("f", 200_000, 1234, 4321, 0o660)  # the ACL mask: rw
    text = file_index.index_entry(backup, "/dir/text.txt")
    assert text.mtime == (1_600_000_000.123456789 if path == "helper" else 1_600_000_000)


@pytest.mark.parametrize("path", ["helper", "engine"])
def test_a_framed_archive_records_its_frames_and_plain_zstd_tar_extracts_it(
        path, settings, no_enqueue, backup_root, rich_volume, tmp_path):
    settings.DATA_PATH = path
    settings.BACKUP_FRAME_BYTES = 1 << 20  # the engine path's frames
    settings.BACKUP_ZSTD_LEVEL = 1  # the helper's pzstd: 1 << (windowLog 19 + 2) = 2 MiB frames
    step = (1 << 20) if path == "engine" else (2 << 20)

    backup = run_backup(services.backup_start(volume_name=rich_volume))

    frames = backup.manifest["archive"]["frames"]
    stored = json.loads(Path(backup.location + ".manifest.json").read_text())
    assert stored["archive"]["frames"] == frames
    assert len(frames) >= 2 and [t for t, _ in frames] == [i * step for i in range(len(frames))]
    walked: list = []
    with open(backup.location, "rb") as f:
        assert sum(len(c) for c in iter_framed(f, walked)) == backup.bytes_read
    assert walked == frames
    # What a person without Cargohold does still works.
    (tmp_path / "out").mkdir()
    subprocess.run(f"zstd -dc '{backup.location}' | tar --numeric-owner -xpf - -C '{tmp_path / 'out'}'",
                   shell=True, check=True)
    assert (tmp_path / "out" / "data" / "many" / "f07.txt").read_bytes() == b"file 7\n" * 701
    (tmp_path / "out2").mkdir()
    subprocess.run(["tar", "--zstd", "-xf", backup.location, "-C", str(tmp_path / "out2")], check=True)
    assert (tmp_path / "out2" / "data" / "dir" / "sub" / "random.bin").stat().st_size == 200_000


def test_the_index_is_stored_beside_the_archive_and_a_rescan_loads_it(
        settings, no_enqueue, backup_root, rich_volume):
    from backups.catalogue import backups_rescan

    settings.DATA_PATH = "helper"
    backup = run_backup(services.backup_start(volume_name=rich_volume))
    before = index_listing(backup)
    stored = Path(backup.location + file_index.INDEX_SUFFIX)
    assert stored.is_file()
    lines = zstandard.ZstdDecompressor().stream_reader(stored.read_bytes()).read().splitlines()
    assert len(lines) == len(before)
    # The database is lost: the rescan finds the archive, and its index with it.
    Backup.objects.filter(pk=backup.pk).delete()
    report = backups_rescan()
    found = Backup.objects.get(pk=report["added"][0])
    assert index_listing(found) == before
    assert file_index.index_entry(found, "many/f03.txt").offset == \
        BackupEntry.objects.filter(backup=found, path="many/f03.txt").get().offset


def test_a_damaged_stored_index_is_not_loaded(db, backup_root, settings):
    from backups.storage import get_storage
    from tests.backups.conftest import backup_row

    backup = backup_row(volume_name="v", key="v/v-1.tar.zst", status="succeeded")
    storage = get_storage()
    body = zstandard.ZstdCompressor().compress(
        b'{"path":"ok","kind":"f","size":1,"mode":420,"uid":0,"gid":0,"mtime":0,"link":""}\n'
        b'{"path":"../etc/passwd","kind":"f","size":1,"mode":420,"uid":0,"gid":0,"mtime":0,"link":""}\n')
    with storage.open_temp_writer(file_index.index_key(backup.key)) as w:
        w.write(body)
        w.commit()
    assert file_index.index_import(backup, storage) is None
    assert not BackupEntry.objects.filter(backup=backup).exists()


def test_children_search_and_entry(db):
    from tests.backups.conftest import backup_row

    backup = backup_row(volume_name="v", status="succeeded")
    file_index.index_replace(backup, [
        {"path": "b", "kind": "d", "size": 0, "mode": 0o755, "uid": 0, "gid": 0, "mtime": 1, "link": ""},
        {"path": "a.txt", "kind": "f", "size": 3, "mode": 0o644, "uid": 1, "gid": 2, "mtime": 1.5, "link": ""},
        {"path": "b/c.txt", "kind": "f", "size": 4, "mode": 0o600, "uid": 0, "gid": 0, "mtime": 2, "link": ""},
        {"path": "z", "kind": "d", "size": 0, "mode": 0o755, "uid": 0, "gid": 0, "mtime": 1, "link": ""},
    ])
    page = file_index.index_children(backup, "", per_page=2)
    assert [e.name for e in page.entries] == ["b", "z"] and page.total == 3 and page.has_next
    assert [e.name for e in file_index.index_children(backup, "", page=2, per_page=2).entries] == ["a.txt"]
    assert [e.path for e in file_index.index_children(backup, "b/").entries] == ["b/c.txt"]
    assert [e.path for e in file_index.index_search(backup, "C.TX")] == ["b/c.txt"]
    assert file_index.index_entry(backup, "./b/c.txt").size == 4
    assert file_index.index_entry(backup, "nope") is None
    # Replacing drops what was there.
    assert file_index.index_replace(backup, []) == 0
    assert not BackupEntry.objects.filter(backup=backup).exists()
