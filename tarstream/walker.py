"""The tar walker: the one reader of tar streams' blocks, trusted or not.

Fed a tar stream in chunks of any size, it checks each header's checksum, gathers the
extended headers (pax, GNU long names) that belong to the next member, counts entries
and data bytes, and knows whether the stream ended with the end-of-archive marker. It
never copies file contents (it skips them by arithmetic), so it costs almost nothing per
byte and keeps nothing per member: backups stream and verify through it as it is.

Untrusted archives (restores, imports) go through `TarScanner` (tarstream.scanner): this
walker with the safety rules on top. The rules see each member through `_member()`,
global pax headers through `_global_pax()`, and can rewrite what passes through `_out`;
the blocks are read here only, so both read the same bytes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tarstream.headers import (
    BLOCK, DIRECTORY, GNU_LONGLINK, GNU_LONGNAME, HARDLINK, HEADER_ONLY, META, PAX, PAX_GLOBAL, REGULAR, SYMLINK,
    ArchiveError, cstring, member_header, padded_size, parse_pax, pax_size,
)

GROUP_LIMIT = 4 << 20  # all the extended headers of one member together


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

    def count(self, kind: bytes, size: int) -> None:
        self.entries += 1
        if kind in REGULAR:
            self.files += 1
            self.data_bytes += size
        elif kind == DIRECTORY:
            self.dirs += 1
        elif kind == SYMLINK:
            self.symlinks += 1
        elif kind == HARDLINK:
            self.hardlinks += 1
        else:
            self.others += 1


@dataclass
class Group:
    """The extended headers read for the next member (only members that have any)."""

    pax: dict = field(default_factory=dict)
    long_name: bytes | None = None
    long_link: bytes | None = None
    blocks: list = field(default_factory=list)  # (type, header, payload), kept only when rewriting
    size: int = 0  # stream bytes, headers included: bounded by GROUP_LIMIT
    start: int = 0  # stream offset of the group's first header (the member's first block)

    def declared_size(self, size: int) -> int:
        """The member's size: a pax `size` record beats the header's field (> 8 GiB)."""
        declared = pax_size(self.pax)
        return size if declared is None else declared


class TarWalker:
    """Walks a tar stream fed in chunks; counts entries; detects truncation and damage.

    `feed()` any number of times, then `close()`: it raises ArchiveError if the stream
    ended inside a member or before the end-of-archive marker (two zero blocks), or if
    a header's checksum is wrong. Memory: one partial header and the extended headers of
    one member (GROUP_LIMIT); nothing per member once it is passed.
    """

    def __init__(self, *, require_end_marker: bool = True):
        self.stats = TarStats()
        self.require_end_marker = require_end_marker
        self._partial = bytearray()  # an incomplete header block
        self._skip = 0  # data (plus padding) bytes still to pass over
        self._meta: bytearray | None = None  # collecting a pax / long-name record's payload
        self._meta_type = b""
        self._meta_header = b""
        self._meta_wanted = 0
        self._group: Group | None = None
        self._zero_blocks = 0
        self._ended = False
        self._at = 0  # stream offset just after the header being handled
        # Subclasses that rewrite the stream set a list: data, zero blocks and what follows
        # the end marker are appended as they pass; headers are theirs to append.
        self._out: list | None = None

    def feed(self, data) -> None:
        view = memoryview(data)
        n = len(view)
        base = self.stats.tar_bytes
        self.stats.tar_bytes += n
        out = self._out
        pos = 0
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                if self._meta is not None:
                    if self._meta_wanted:
                        want = min(take, self._meta_wanted)
                        self._meta += view[pos : pos + want]
                        self._meta_wanted -= want
                elif out is not None:
                    out.append(view[pos : pos + take])
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
                if out is not None:
                    out.append(rest)
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
            self._at = base + pos
            self._header(header)

    def _header(self, header: bytes) -> None:
        if header.count(0) == BLOCK:
            if self._group is not None:
                raise ArchiveError("The archive ends after an extended header, without its member.")
            self._zero_blocks += 1
            if self._out is not None:
                self._out.append(header)
            if self._zero_blocks >= 2:
                self._ended = True
            return
        kind, size = member_header(header, zero_blocks_before=self._zero_blocks, at=self.stats.tar_bytes)
        if kind in META:
            group = self._group or Group(start=self._at - BLOCK)
            self._group = group
            self._skip = padded_size(size)
            group.size += BLOCK + self._skip
            if group.size > GROUP_LIMIT:
                raise ArchiveError("The archive has more than 4 MiB of extended headers for one member.")
            self._meta = bytearray()
            self._meta_type, self._meta_header, self._meta_wanted = kind, header, size
            if not self._skip:
                self._finish_meta()
            return
        group, self._group = self._group, None
        self._skip = padded_size(self._member(header, kind, size, group))

    def _member(self, header: bytes, kind: bytes, size: int, group: Group | None) -> int:
        """Count one member; return how many data bytes follow its header."""
        if group is not None:
            size = group.declared_size(size)
        self.stats.count(kind, size)
        return 0 if kind in HEADER_ONLY else size

    def _finish_meta(self) -> None:
        payload, kind, group = bytes(self._meta), self._meta_type, self._group
        self._meta = None
        if self._out is not None:
            group.blocks.append((kind, self._meta_header, payload))
        if kind == PAX:
            group.pax.update(parse_pax(payload))
        elif kind == GNU_LONGNAME:
            group.long_name = cstring(payload)
        elif kind == GNU_LONGLINK:
            group.long_link = cstring(payload)
        elif kind == PAX_GLOBAL:
            self._global_pax(payload)

    def _global_pax(self, payload: bytes) -> None:
        """A global pax header: it changes nothing that is counted."""

    def _check_complete(self) -> None:
        if self._skip or self._partial or self._meta is not None or self._group is not None:
            raise ArchiveError("The archive is truncated: it ends in the middle of a member.")
        if self.require_end_marker and not self._ended:
            raise ArchiveError("The archive is truncated: it has no end-of-archive marker.")

    def close(self) -> TarStats:
        self._check_complete()
        if not self.stats.entries and not self._ended:
            raise ArchiveError("The archive is empty.")
        self.stats.complete = True
        return self.stats
