"""One file or folder out of an archive backup: read from the frames that hold it (a ranged
read, not the archive from its start), exact bytes, folders as a tar relative to their
parent, hard links whose target is elsewhere as copies, sparse files whole, archives
without frames read from the start, and damaged frames refused."""

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from backups import partial, services
from backups.models import Backup
from backups.storage import LocalStorage
from tarstream import ArchiveError
from tests.backups.conftest import run_backup
from tests.backups.fidelity import fill_rich, mountpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

BIG = 9 << 20


@pytest.fixture
def framed_backup(settings, no_enqueue, backup_root, volume_with_files):
    """A helper-path backup in 2 MiB frames (pzstd at level 1): a 9 MiB random file across frames, small
    files after it, the fidelity content (links, sparse file, xattrs)."""
    settings.DATA_PATH = "helper"
    settings.BACKUP_FRAME_BYTES = 1 << 20  # engine path; the helper's pzstd makes 2 MiB frames at level 1
    settings.BACKUP_ZSTD_LEVEL = 1
    name = volume_with_files("true")
    root = mountpoint(name)
    fill_rich(root)
    (root / "a-big.bin").write_bytes(os.urandom(BIG))
    (root / "zz").mkdir()
    for i in range(20):
        (root / "zz" / f"f{i:02}.txt").write_bytes(f"file {i}\n".encode() * (i * 1000 + 1))
    # Compressible files after the big one in any walk order (readdir order is the file
    # system's): whichever folder tar reads first, some small file lies past frame 0.
    (root / "zz" / "later").mkdir()
    for i in range(40):
        (root / "zz" / "later" / f"g{i:02}.txt").write_bytes(os.urandom(60_000))
    backup = run_backup(services.backup_start(volume_name=name))
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert len(backup.manifest["archive"]["frames"]) >= 5
    return backup, root


@pytest.fixture
def ranges(monkeypatch):
    """The ranged reads made of the archive: (start, length)."""
    made = []
    original = LocalStorage.open_range

    def spy(self, key, start, length):
        made.append((start, length))
        return original(self, key, start, length)

    monkeypatch.setattr(LocalStorage, "open_range", spy)
    return made


def test_one_file_from_the_middle_is_read_from_its_frames_only(framed_backup, ranges):
    from backups.models import BackupEntry

    backup, root = framed_backup
    # The last small file in the archive's order (GNU tar walks folders in readdir order).
    last = BackupEntry.objects.filter(backup=backup, kind="f", size__lt=100_000).exclude(
        path__contains="\\x").order_by("-offset").first()
    second_frame = backup.manifest["archive"]["frames"][1][0]
    assert last.offset >= second_frame, (last.path, last.offset, second_frame)  # not in the first frame

    data = b"".join(partial.read_file_bytes(backup, last.path))

    assert data == (root / last.path).read_bytes()
    (start, length), = ranges
    assert start > 0 and length < backup.size_bytes // 2  # not the archive from its start


def test_a_file_across_frames_comes_out_exact(framed_backup, ranges):
    backup, root = framed_backup
    digest = hashlib.sha256()
    for chunk in partial.read_file_bytes(backup, "a-big.bin"):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256((root / "a-big.bin").read_bytes()).hexdigest()
    sink = io.BytesIO()
    assert partial.write_file_bytes(backup, "/a-big.bin", sink) == BIG


def test_a_sparse_file_comes_out_whole(framed_backup):
    backup, root = framed_backup
    data = b"".join(partial.read_file_bytes(backup, "sparse.img"))
    assert data == (root / "sparse.img").read_bytes()


def test_a_folder_downloads_as_a_tar_relative_to_its_parent(framed_backup, tmp_path):
    backup, root = framed_backup
    sink = io.BytesIO()

    partial.write_member_tar(backup, "dir/sub", sink)

    with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as tf:
        names = sorted(m.name for m in tf.getmembers())
        assert names == ["sub", "sub/random.bin"]
        member = tf.getmember("sub/random.bin")
        assert (member.uid, member.gid) == (1234, 4321)
        assert tf.extractfile(member).read() == (root / "dir" / "sub" / "random.bin").read_bytes()
    sink = io.BytesIO()
    partial.write_member_tar(backup, "dir", sink)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as tf:
        names = {m.name: m for m in tf.getmembers()}
        # GNU tar writes the first of the two names it meets as the file, the other as a link to it.
        pair = {"dir/hardlink.txt", "dir/text.txt"}
        link, = [names[n] for n in pair if names[n].islnk()]
        assert link.linkname in pair - {link.name}
        assert names["dir/relative-link"].issym() and names["dir/relative-link"].linkname == "text.txt"
        assert all(n == "dir" or n.startswith("dir/") for n in names)
        assert tf.extractfile("dir/text.txt").read() == b"hello\n" * 1000
        file, = [names[n] for n in pair if names[n].isreg()]
        assert file.pax_headers.get("SCHILY.xattr.user.origin") == "made by the fidelity test"


def test_a_hard_link_whose_target_is_not_read_comes_out_as_a_copy(framed_backup):
    from backups.models import BackupEntry

    backup, _ = framed_backup
    link = BackupEntry.objects.get(backup=backup, parent="dir", kind="h")
    sink = io.BytesIO()
    partial.write_member_tar(backup, link.path, sink)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as tf:
        member, = tf.getmembers()
        assert member.name == link.name and member.isreg()
        assert tf.extractfile(member).read() == b"hello\n" * 1000
    assert b"".join(partial.read_file_bytes(backup, link.path)) == b"hello\n" * 1000


def test_a_name_that_is_not_utf8_is_read_by_its_escaped_path(framed_backup):
    backup, _ = framed_backup
    assert b"".join(partial.read_file_bytes(backup, "caf\\xe9-\\xff.txt")) == b"latin-1 name\n"


def test_a_path_not_in_the_index_is_refused(framed_backup):
    backup, _ = framed_backup
    with pytest.raises(partial.MemberNotFound, match="not in backup"):
        list(partial.read_file_bytes(backup, "no/such/file"))
    with pytest.raises(partial.MemberNotFound, match="not a file"):
        list(partial.read_file_bytes(backup, "dir"))


def test_an_archive_without_frames_is_read_from_its_start(framed_backup, ranges):
    backup, root = framed_backup
    manifest = dict(backup.manifest)
    manifest["archive"] = {k: v for k, v in manifest["archive"].items() if k != "frames"}
    Backup.objects.filter(pk=backup.pk).update(manifest=manifest)
    backup.refresh_from_db()

    assert b"".join(partial.read_file_bytes(backup, "zz/f13.txt")) == (root / "zz" / "f13.txt").read_bytes()
    assert ranges == []  # the whole archive, sequentially


def test_a_gzip_archive_is_read_from_its_start(settings, no_enqueue, backup_root, volume_with_files):
    settings.DATA_PATH = "engine"
    name = volume_with_files()
    backup = run_backup(services.backup_start(volume_name=name, compression="gzip"))
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert partial.archive_frames(backup) is None
    assert b"".join(partial.read_file_bytes(backup, "dir/hello.txt")) == b"hello\n"


def test_a_damaged_frame_is_refused(framed_backup):
    backup, _ = framed_backup
    frames = backup.manifest["archive"]["frames"]
    entry = partial.find_entry(backup, "zz/f13.txt")
    first = max(c for t, c in frames if t <= entry.offset)
    path = Path(backup.location)
    data = bytearray(path.read_bytes())
    data[first + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        list(partial.read_file_bytes(backup, "zz/f13.txt"))
