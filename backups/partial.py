"""One file or folder out of an archive backup, without reading the whole archive.

The file index (backups.file_index) says where a member's first header is in the tar
stream (`offset`); the manifest's `frames` say where each independent zstd frame starts
(tarstream.frames). So a member is read by a ranged read (Storage.open_range) from the
start of the frame that holds it, decompressing only the frames up to the end of its
members (a folder's members are contiguous: GNU tar and dockerd write a folder's content
right after it), skipping to the member, and stopping at the first member outside it.

What comes out is untrusted input, even from our own archive: every member goes through
the scanner's rules (tarstream.TarScanner: names, types, links, limits), and the frames
read are decompressed to their very end, so their zstd checksums and the recorded frame
sizes are proven before the tar's end marker is handed on (a writer that extracts, GNU tar
in the data helper, gets no end marker for bytes that did not check out).

Archives without frames (gzip, older backups, imports) are read sequentially from the
start: still correct, slower; their SHA-256 is checked over the whole read instead.

A hard link whose target is outside what is read is written as a copy of its target's
content (its own name, the target's header): the tar stays extractable on its own.

Entry points (worker side and the download views): `read_member_stream` (tar pieces of
the members, names as in the archive: `data/...`), `member_tar_pieces` (several paths,
for restores), `write_member_tar` (a folder or file as a tar, names relative to its
parent), `read_file_bytes` / `write_file_bytes` (one regular file's content).
"""

from __future__ import annotations

from collections.abc import Iterator

from backups.file_index import index_entry, normalize_path, subtree_end
from backups.models import Backup, BackupEntry
from backups.storage import backup_storage
from project.errors import CargoholdError
from tarstream import ArchiveError, ExpansionLimit, HashingReader, Layout, TarScanner, UnsafeArchive, tar_chunks
from tarstream.compression import CHUNK_SIZE, iter_decompressed
from tarstream.frames import frame_span
from tarstream.scanner import renamed_pieces
from tarstream.headers import (
    BLOCK,
    DIRECTORY,
    HARDLINK,
)
from tarstream.index import entry_path
from tarstream.scanner import Member, split_path

END_MARKER = bytes(2 * BLOCK)


class MemberNotFound(CargoholdError):
    """The path is not in the backup's file index."""


def archive_frames(backup: Backup) -> list | None:
    """The frames of a zstd archive, as its manifest records them (None: read from the start)."""
    if backup.compression != "zstd":
        return None
    frames = ((backup.manifest or {}).get("archive") or {}).get("frames")
    if not isinstance(frames, list) or not frames:
        return None
    try:
        clean = [[int(t), int(c)] for t, c in frames]
    except (TypeError, ValueError):
        return None
    # The first frame starts the stream, or follows pzstd's 12-byte skippable frame.
    if clean[0][0] != 0 or not 0 <= clean[0][1] <= 64 or any(b[0] <= a[0] or b[1] <= a[1] for a, b in zip(clean, clean[1:])):
        return None  # not what Cargohold writes: read it sequentially instead
    return clean


def find_entry(backup: Backup, path: str) -> BackupEntry:
    if not backup.key:
        raise MemberNotFound(f"Backup #{backup.pk} has no archive to read files from.")
    entry = index_entry(backup, path)
    if entry is None:
        raise MemberNotFound(f"{normalize_path(path) or '/'} is not in backup #{backup.pk}.")
    if entry.offset is None:
        raise MemberNotFound(f"Backup #{backup.pk}'s index does not say where {entry.path} is in its archive.")
    return entry


# --- the tar bytes of a range ------------------------------------------------------------------


class _Source:
    """The uncompressed tar bytes from `start` on, in chunks, read from the fewest frames;
    `verify()` after the last chunk proves what was read (frames: their sizes and zstd
    checksums; no frames: the whole archive's SHA-256)."""

    def __init__(self, backup: Backup, storage, start: int, end: int | None):
        self.backup = backup
        self.storage = storage
        frames = archive_frames(backup)
        self.framed = frames is not None
        self._reader = None
        if self.framed:
            size = backup.size_bytes or storage.stat(backup.key).size
            tar_first, comp_first, tar_after, comp_after = frame_span(frames, start, end, size)
            self.skip = start - tar_first
            self.expected = (tar_after if tar_after is not None else backup.bytes_read or 0) - tar_first
            length = (comp_after if comp_after is not None else size) - comp_first
            self._raw = storage.open_range(backup.key, comp_first, length)
            self._chunks = iter_decompressed(self._raw, "zstd")
        else:
            self.skip = start
            self.expected = None
            self._raw = storage.open_reader(backup.key)
            self._reader = HashingReader(self._raw)
            self._chunks = tar_chunks(self._reader, backup.compression)
        self.read = 0

    def __iter__(self) -> Iterator[memoryview]:
        skip = self.skip
        for chunk in self._chunks:
            self.read += len(chunk)
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            view = memoryview(chunk)[skip:]
            skip = 0
            yield view

    def drain(self) -> None:
        for _ in self:
            pass

    def verify(self) -> None:
        if self.framed:
            if self.backup.bytes_read and self.read != self.expected:
                raise ArchiveError(
                    f"Backup #{self.backup.pk}'s archive is damaged: its frames hold {self.read} bytes of tar "
                    f"where {self.expected} were recorded."
                )
            return
        if self._reader is not None:
            self._reader.drain()
            if self.backup.sha256 and self._reader.hexdigest() != self.backup.sha256:
                raise ArchiveError(
                    f"Backup #{self.backup.pk}'s archive changed in storage: its SHA-256 is "
                    f"{self._reader.hexdigest()}, not the recorded {self.backup.sha256}."
                )

    def close(self) -> None:
        try:
            self._chunks.close()
        except AttributeError:
            pass
        self._raw.close()


# --- the members of a subtree, checked -----------------------------------------------------------


class _Stop(Exception):
    """The first member outside the subtree (or the archive's end) was reached."""


class _Copy:
    """A hard link to be written as a copy of its target (expanded by `_pieces`)."""

    def __init__(self, target: str, name: bytes):
        self.target, self.name = target, name


class _SubtreeScanner(TarScanner):
    """The scanner's rules over the members of one subtree (from its first header on),
    names rewritten by `rename` (data/... -> what the output holds), stopping at the first
    member outside it. `seen`: the rules' memory (files and symlinks seen) shared by the
    scanners of several subtrees written into one tar."""

    def __init__(self, *, path: str, rename, allow_devices: bool, seen=None, limit: ExpansionLimit | None = None,
                 single: bool = False):
        super().__init__(allow_devices=allow_devices, limit=limit, expect=Layout.DATA)
        self.rewrite = True  # rewriting to any names, not only the ./ layout's
        self._out = []
        self.path = path
        self.rename = rename
        self.single = single
        self.members = 0
        self._copy: _Copy | None = None
        if seen is not None:
            self._non_dirs, self._symlinks = seen

    @property
    def seen(self):
        return self._non_dirs, self._symlinks

    def _header(self, header: bytes) -> None:
        if header.count(0) == BLOCK:
            raise _Stop  # the end of the archive: no end marker of its own goes out
        super()._header(header)

    def check(self, member: Member) -> None:
        path = entry_path(member.name)
        inside = path == self.path or (not self.single and path.startswith(self.path + "/"))
        if not inside or (self.single and self.members):
            if not self.members:
                raise ArchiveError(
                    f"The archive does not match its index: {self.path} is not where the index says "
                    f"(found {path!r})."
                )
            raise _Stop
        self.members += 1
        if member.type == HARDLINK and member.linkname:
            try:
                target = split_path(member.linkname)
            except UnsafeArchive:
                target = None
            if target is not None and target not in self._non_dirs and self._symlink_on(target) is None:
                # Its target is not in what is written: a copy of the target's content.
                super().check(Member(name=member.name, linkname=b"", type=b"0", size=0, mode=member.mode,
                                     uid=member.uid, gid=member.gid))
                self._copy = _Copy(entry_path(member.linkname), self.rename(member.name))
                return
        super().check(member)

    def _rewritten(self, group, header: bytes, member: Member) -> list:
        if self._copy is not None:
            copy, self._copy = self._copy, None
            return [copy]
        name = self.rename(member.name)
        link = member.linkname
        if member.type == HARDLINK:
            link = self.rename(member.linkname)
        if member.type == DIRECTORY and not name.endswith(b"/"):
            name += b"/"
        return renamed_pieces(group, header, member, name, link)




def keep_names(name: bytes) -> bytes:
    """Names as a restore writes them: under data/ (as in the archive), extracted at /."""
    return b"/".join(split_path(name))


def _relative_to_parent(path: str):
    depth = len(path.split("/")) - 1  # components of the parent, below data/

    def rename(name: bytes) -> bytes:
        parts = split_path(name)
        if parts and parts[0] == b"data":
            parts = parts[1:]
        return b"/".join(parts[depth:])

    return rename


def _pieces(backup: Backup, entry: BackupEntry, *, rename, allow_devices: bool, storage, seen=None,
            single: bool = False, copies: int = 0) -> Iterator[bytes]:
    """The checked, renamed tar pieces of `entry`'s members (no end marker)."""
    source = _Source(backup, storage, entry.offset, subtree_end(backup, entry))
    limit = ExpansionLimit(backup.bytes_read, f"the size recorded for backup #{backup.pk}") if backup.bytes_read \
        else None
    scanner = _SubtreeScanner(path=entry.path, rename=rename, allow_devices=allow_devices, seen=seen, limit=limit,
                              single=single)
    try:
        stopped = False
        for chunk in source:
            if stopped:
                continue  # frames: read to the end of the last one, proven by verify() below
            try:
                out = scanner.feed(chunk)
            except _Stop:
                out, scanner._out = scanner._out, []
                stopped = True
            for piece in out:
                if isinstance(piece, _Copy):
                    yield from _copy_pieces(backup, piece, allow_devices=allow_devices, storage=storage,
                                            copies=copies)
                else:
                    yield bytes(piece)
            if stopped and not source.framed:
                break  # sequential: verify() reads the rest for the archive's checksum
        if not stopped:  # the range ended right after the last member: whole, no end marker in it
            scanner.require_end_marker = False
            scanner._check_complete()
        source.verify()
    finally:
        source.close()
    if not scanner.members:
        raise ArchiveError(f"The archive does not match its index: {entry.path} was not found in it.")


def _copy_pieces(backup: Backup, copy: _Copy, *, allow_devices: bool, storage, copies: int) -> Iterator[bytes]:
    if copies > 8:
        raise UnsafeArchive(f"Refused: the hard link {copy.name!r} leads through too many links.")
    target = index_entry(backup, copy.target)
    if target is None or target.kind != BackupEntry.Kind.FILE or target.offset is None:
        raise UnsafeArchive(f"Refused: a hard link points to {copy.target!r}, which is not a file of the backup.")
    yield from _pieces(backup, target, rename=lambda _name: copy.name, allow_devices=allow_devices,
                       storage=storage, single=True, copies=copies + 1)


def read_member_stream(backup: Backup, path: str, *, allow_devices: bool = False, storage=None) -> Iterator[bytes]:
    """The tar pieces of one file or folder (its whole subtree) of `backup`, names as in
    the archive (`data/...`), checked, ending with the end-of-archive marker only once
    everything read checked out. Raises MemberNotFound, ArchiveError, UnsafeArchive."""
    return member_tar_pieces(backup, [path], allow_devices=allow_devices, storage=storage)


def selected_entries(backup: Backup, paths: list[str]) -> list[BackupEntry]:
    """The index entries of `paths`, in archive order, without those inside another one."""
    entries = sorted({e.pk: e for e in (find_entry(backup, p) for p in paths)}.values(), key=lambda e: e.offset)
    kept: list[BackupEntry] = []
    for entry in entries:
        if any(entry.path.startswith(k.path + "/") for k in kept if k.kind == BackupEntry.Kind.DIR):
            continue
        kept.append(entry)
    return kept


def member_tar_pieces(backup: Backup, paths: list[str], *, allow_devices: bool = False, storage=None,
                      rename=keep_names) -> Iterator[bytes]:
    """One tar of several files or folders of `backup` (see read_member_stream)."""
    storage = storage or backup_storage(backup)
    entries = selected_entries(backup, paths)
    seen = (set(), set())
    for entry in entries:
        yield from _pieces(backup, entry, rename=rename, allow_devices=allow_devices, storage=storage, seen=seen)
    yield END_MARKER


def write_member_tar(backup: Backup, path: str, writer, *, storage=None) -> int:
    """A file or folder of `backup` as a tar into `writer` (`.write(bytes)`), names relative
    to its parent folder (`app/conf` -> `conf/...`). Returns the bytes written."""
    written = 0
    for piece in member_tar_stream(backup, path, storage=storage):
        writer.write(piece)
        written += len(piece)
    return written


def member_tar_stream(backup: Backup, path: str, *, storage=None) -> Iterator[bytes]:
    """write_member_tar's pieces as an iterator (a download streams them); MemberNotFound
    is raised at once, what reading finds wrong when it is read."""
    entry = find_entry(backup, path)
    return member_tar_pieces(backup, [entry.path], allow_devices=True, storage=storage,
                             rename=_relative_to_parent(entry.path))


# --- one file's content ----------------------------------------------------------------------------


def read_file_bytes(backup: Backup, path: str, *, storage=None) -> Iterator[bytes]:
    """The content of one regular file (or of a hard link's target) of `backup`, in
    chunks. Sparse files come out whole (their holes as zeros)."""
    entry = find_entry(backup, path)
    if entry.kind == BackupEntry.Kind.HARDLINK:
        target = index_entry(backup, entry.link)
        if target is None or target.kind != BackupEntry.Kind.FILE:
            raise MemberNotFound(f"{entry.path} is a hard link to {entry.link}, which is not a file of the backup.")
        entry = target
    if entry.kind != BackupEntry.Kind.FILE:
        raise MemberNotFound(f"{entry.path} is a {entry.get_kind_display()}, not a file.")
    pieces = member_tar_pieces(backup, [entry.path], storage=storage, rename=lambda _name: b"file")
    return _file_content(pieces, expected=entry.size)


def write_file_bytes(backup: Backup, path: str, writer, *, storage=None) -> int:
    written = 0
    for chunk in read_file_bytes(backup, path, storage=storage):
        writer.write(chunk)
        written += len(chunk)
    return written


def _file_content(pieces, *, expected: int) -> Iterator[bytes]:
    """The data of the one regular member of a checked tar stream (a pax sparse member
    expanded: GNU sparse 1.0's map, then its data chunks)."""
    import tarfile

    from tarstream.hashing import ChunkFile

    stream = ChunkFile(pieces)
    with tarfile.open(fileobj=stream, mode="r|") as tf:
        member = tf.next()
        if member is None or not member.isreg():
            raise ArchiveError("The archive does not hold that file where its index says.")
        f = tf.extractfile(member)
        total = 0
        while True:
            chunk = f.read(CHUNK_SIZE)
            if not chunk:
                break
            total += len(chunk)
            yield chunk
        if total != expected:
            raise ArchiveError(f"The file has {total} bytes in the archive; its index says {expected}.")
        # The end marker only comes once every frame read checked out: read to it.
        while tf.next() is not None:  # pragma: no cover - one member only
            pass
    while stream.read(CHUNK_SIZE):
        pass
