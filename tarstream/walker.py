"""The counting walker: fed a tar stream in chunks of any size, it checks each header's
checksum, counts entries and data bytes, and knows whether the stream ended with the
end-of-archive marker. It never copies file contents (it skips them by arithmetic), so
it costs almost nothing per byte: backups stream and verify through it. Untrusted
archives go through the checking scanner (tarstream.scanner) instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from tarstream.headers import BLOCK, HEADER_ONLY, META, PAX, ArchiveError, member_header, parse_pax, pax_size


@dataclass
class TarStats:
    entries: int = 0
    files: int = 0  # regular files
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    others: int = 0  # devices, fifos, anything else
    data_bytes: int = 0  # sum of regular files' sizes
    tar_bytes: int = 0  # bytes of the tar stream, padding and end marker included
    complete: bool = False

    @property
    def file_count(self) -> int:
        """Everything but directories: what a person calls "files" in a volume."""
        return self.entries - self.dirs

    def as_dict(self) -> dict:
        return {
            "entries": self.entries,
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "hardlinks": self.hardlinks,
            "others": self.others,
            "data_bytes": self.data_bytes,
            "tar_bytes": self.tar_bytes,
        }


class TarWalker:
    """Walks a tar stream fed in chunks; counts entries; detects truncation and damage.

    `feed()` any number of times, then `close()`: it raises ArchiveError if the stream
    ended inside a member or before the end-of-archive marker (two zero blocks), or if
    a header's checksum is wrong. Memory: one partial header and at most one pax or GNU
    long-name record (bounded by _META_LIMIT).
    """

    def __init__(self, *, require_end_marker: bool = True):
        self.stats = TarStats()
        self.require_end_marker = require_end_marker
        self._partial = bytearray()  # an incomplete header block
        self._skip = 0  # data (plus padding) bytes still to pass over
        self._meta: bytearray | None = None  # collecting a pax / long-name record
        self._meta_type = b""
        self._meta_wanted = 0
        self._pax_size: int | None = None
        self._zero_blocks = 0
        self._ended = False

    def feed(self, data) -> None:
        view = memoryview(data)
        n = len(view)
        self.stats.tar_bytes += n
        pos = 0
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                if self._meta is not None and self._meta_wanted:
                    want = min(take, self._meta_wanted)
                    self._meta += view[pos : pos + want]
                    self._meta_wanted -= want
                self._skip -= take
                pos += take
                if not self._skip and self._meta is not None:
                    self._finish_meta()
                continue
            if self._ended:
                # After the end marker only zero padding may follow (to a record size).
                rest = view[pos:]
                if rest.tobytes().count(0) != len(rest):
                    raise ArchiveError("The archive has data after its end-of-archive marker.")
                return
            if self._partial or n - pos < BLOCK:
                need = BLOCK - len(self._partial)
                self._partial += view[pos : pos + need]
                pos += min(need, n - pos)
                if len(self._partial) < BLOCK:
                    return
                header = bytes(self._partial)
                self._partial.clear()
            else:
                header = view[pos : pos + BLOCK].tobytes()
                pos += BLOCK
            self._header(header)

    def _header(self, header: bytes) -> None:
        if header.count(0) == BLOCK:
            self._zero_blocks += 1
            if self._zero_blocks >= 2:
                self._ended = True
            return
        kind, size = member_header(header, zero_blocks_before=self._zero_blocks, at=self.stats.tar_bytes)
        if kind in META:
            self._meta = bytearray()
            self._meta_type = kind
            self._meta_wanted = size
            self._skip = -(-size // BLOCK) * BLOCK
            if not self._skip:
                self._finish_meta()
            return
        if self._pax_size is not None:
            size = self._pax_size
            self._pax_size = None
        stats = self.stats
        stats.entries += 1
        if kind in (b"0", b"\0", b"7"):
            stats.files += 1
            stats.data_bytes += size
        elif kind == b"5":
            stats.dirs += 1
        elif kind == b"2":
            stats.symlinks += 1
        elif kind == b"1":
            stats.hardlinks += 1
        else:
            stats.others += 1
        if kind not in HEADER_ONLY:
            self._skip = -(-size // BLOCK) * BLOCK

    def _finish_meta(self) -> None:
        meta, kind = bytes(self._meta or b""), self._meta_type
        self._meta = None
        if kind == PAX:
            size = pax_size(parse_pax(meta))
            if size is not None:
                self._pax_size = size

    def close(self) -> TarStats:
        if self._skip or self._partial or self._meta is not None:
            raise ArchiveError("The archive is truncated: it ends in the middle of a member.")
        if self.require_end_marker and not self._ended:
            raise ArchiveError("The archive is truncated: it has no end-of-archive marker.")
        if not self.stats.entries and not self._ended:
            raise ArchiveError("The archive is empty.")
        self.stats.complete = True
        return self.stats
