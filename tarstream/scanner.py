"""Untrusted tar streams: read member headers as the engine will, refuse what is unsafe.

The safety rules layered on the walker (tarstream.walker reads the blocks of trusted and
untrusted streams alike): no Django, no engine, no file system. Restores never extract
in Python: the Docker Engine extracts (through its archive endpoint, as root, keeping
owners); we only validate the bytes and forward them. So the rules read names exactly as the engine's Go `archive/tar` reader does — a GNU long
name beats a pax `path`, which beats the ustar prefix + name — and refuses anything
where tar implementations could disagree (a pax `path` *and* a GNU long name on one
member, data on a header-only member, old GNU sparse members), so what we checked is
what the engine writes.

Refused, with a message naming the member:
- absolute paths and `..` components (in names and in hardlink targets);
- members whose path passes through a symlink of the archive (`data/l -> /etc`, then
  `data/l/passwd`), and hardlinks whose target does;
- hardlinks to anything that is not an earlier non-directory member of the archive;
- block and character devices, unless explicitly allowed;
- a root that is not a directory (`data` as a symlink would swap the volume);
- archives whose members do not share one of the known roots.

Known layouts (`Layout`):
- `data`: every member is `data` or under `data/` (Cargohold's archives, the
  `tar czf backup.tar.gz /data` recipe; `./data/...` reads the same). Extracted at `/`
  of a helper container whose volume is at `/data`: the bytes go to the engine unchanged.
- `dot`: members relative to the volume's root, `./...` (`tar -C /data -czf x.tgz .`).
  The names are rewritten to `data/...` on the way (the engine resolves hardlink targets
  against its working directory, so extracting `./...` at `/data` would lose the modes of
  hardlinked files and the root's times); data bytes pass unchanged.

Which one an archive uses is only known after its last member (an archive of `./data`
has a `./` prefix too), so a restore checks the whole archive first, then writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from project.errors import CargoholdError
from tarstream.headers import (
    BLOCKDEV, CHAR, DIRECTORY, FIFO, GNU_LONGLINK, GNU_LONGNAME, GNU_MAGIC, HARDLINK, HEADER_ONLY, PAX, PAX_GLOBAL,
    SYMLINK, USTAR_MAGIC, ArchiveError, cstring, encode_pax, meta_block, padded, padded_size, parse_number, parse_pax,
    with_checksum,
)
from tarstream.limits import ExpansionLimit
from tarstream.walker import Group, TarStats, TarWalker
NAME_LIMIT = 4096  # Linux PATH_MAX
DEVICES = {CHAR, BLOCKDEV}
TYPE_NAMES = {
    b"0": "file", b"\0": "file", b"7": "file", HARDLINK: "hardlink", SYMLINK: "symlink",
    CHAR: "character device", BLOCKDEV: "block device", DIRECTORY: "directory", FIFO: "FIFO",
}


class UnsafeArchive(CargoholdError):
    """The archive could write outside the volume, or swap it: refused, nothing written."""


class Layout(str, enum.Enum):
    DATA = "data"  # data/... (or ./data/...): forwarded unchanged, extracted at /
    DOT = "dot"  # ./... : names rewritten to data/..., extracted at /

    @property
    def description(self) -> str:
        return "members under data/" if self is Layout.DATA else "members under ./ (the volume's root)"


def show(name: bytes) -> str:
    """A member name for a message: not UTF-8 bytes shown escaped, control characters too."""
    text = name.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:300]


@dataclass(frozen=True)
class Member:
    name: bytes  # the path as the engine reads it
    linkname: bytes
    type: bytes  # one byte, "0" for regular files
    size: int
    mode: int
    uid: int
    gid: int

    @property
    def kind(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type!r}")


@dataclass
class ScanResult:
    stats: TarStats
    layout: Layout

def _header_names(header: bytes) -> tuple[bytes, bytes, str]:
    """(name, linkname, format) from a header block, applying the ustar prefix like Go."""
    name = cstring(header[0:100])
    linkname = cstring(header[157:257])
    magic = header[257:263]
    if magic == USTAR_MAGIC:
        star = header[508:512] == b"tar\x00"
        prefix = cstring(header[345:476] if star else header[345:500])
        if prefix:
            name = prefix + b"/" + name
        return name, linkname, "star" if star else "ustar"
    if header[257:265] == GNU_MAGIC:
        return name, linkname, "gnu"
    return name, linkname, "v7"


def split_path(name: bytes, *, what: str = "member") -> tuple[bytes, ...]:
    """A member path as components; refuses absolute paths and `..`."""
    if name.startswith(b"/"):
        raise UnsafeArchive(f"Refused: the {what} {show(name)!r} is an absolute path.")
    parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise UnsafeArchive(f"Refused: the {what} {show(name)!r} contains a '..' component.")
    return parts


class TarScanner(TarWalker):
    """Feed a tar stream in chunks of any size; every member is checked as it completes.

    The walker (tarstream.walker) reads the blocks; this adds the rules and what they
    remember (symlinks and files seen: per path, so only untrusted streams pay for them).
    `rewrite` (with `expect` = Layout.DOT) makes `feed()` return the stream with names
    rewritten to `data/...` (a list of byte pieces); otherwise `feed()` returns nothing
    and the caller forwards its own bytes unchanged. `expect` = a layout makes members
    that do not fit it refused at once (the second pass of a restore knows the layout
    from the first). Memory: one header group (GROUP_LIMIT) and the two path sets.
    """

    def __init__(self, *, allow_devices: bool = False, expect: Layout | None = None, rewrite: bool = False,
                 limit: ExpansionLimit | None = None):
        if rewrite and expect is not Layout.DOT:
            raise ValueError("rewriting applies to the ./ layout only")
        super().__init__()
        self.allow_devices = allow_devices
        # Checked against what each header announces (its data is not read yet), so a
        # bomb is refused at its first large member, before it is decompressed.
        self.limit = limit
        self.expect = expect
        self.rewrite = rewrite
        self._out = [] if rewrite else None
        # What the safety rules need to remember (paths as component tuples).
        self._symlinks: set[tuple[bytes, ...]] = set()
        self._non_dirs: set[tuple[bytes, ...]] = set()
        self._all_data = True  # every member is data or under data/
        self._all_dot = True  # every member's raw name starts with ./ (or is .)
        self._first_not_data: bytes | None = None
        self._first_not_dot: bytes | None = None
        self._first_name: bytes | None = None
        self._data_root_replaced: tuple[bytes, Member] | None = None

    def feed(self, data) -> list:
        if self.limit is not None:
            self.limit.check(self.stats.tar_bytes + len(data))
        super().feed(data)
        if not self.rewrite:
            return []
        out, self._out = self._out, []
        return out

    def _global_pax(self, payload: bytes) -> None:
        records = parse_pax(payload)
        if any(k in records for k in (b"path", b"linkpath")) or any(k.startswith(b"GNU.sparse") for k in records):
            raise UnsafeArchive("Refused: the archive has a global pax header that renames members.")

    def _member(self, header: bytes, kind: bytes, size: int, group: Group | None) -> int:
        group = group or Group()
        name, linkname, fmt = _header_names(header)
        pax = group.pax
        sparse = any(k.startswith(b"GNU.sparse") for k in pax)
        if sparse or kind == b"S":
            name = self._sparse_name(group, kind, name)
        elif b"path" in pax:
            if group.long_name is not None:
                raise UnsafeArchive(
                    f"Refused: the member {show(pax[b'path'])!r} has two different names "
                    "(a pax path and a GNU long name); tar programs disagree on which one counts."
                )
            name = pax[b"path"]
        if b"linkpath" in pax:
            if group.long_link is not None:
                raise UnsafeArchive(f"Refused: the member {show(name)!r} has two different link targets.")
            linkname = pax[b"linkpath"]
        if group.long_name is not None:
            name = group.long_name
        if group.long_link is not None:
            linkname = group.long_link
        size = group.declared_size(size)
        if b"\0" in name or b"\0" in linkname:
            raise UnsafeArchive(f"Refused: the member {show(name)!r} has a NUL byte in its name.")
        if not name:
            raise UnsafeArchive("Refused: the archive has a member without a name.")
        if len(name) > NAME_LIMIT or len(linkname) > NAME_LIMIT:
            raise UnsafeArchive(f"Refused: the member {show(name)!r} has a name longer than {NAME_LIMIT} bytes.")
        if kind == b"\0" and name.endswith(b"/"):
            kind = DIRECTORY  # old tar: a "regular file" whose name ends in / is a directory (Go agrees)
        if kind in HEADER_ONLY and size:
            raise UnsafeArchive(
                f"Refused: the {TYPE_NAMES[kind]} {show(name)!r} claims {size} bytes of data; "
                "tar programs disagree on how to read that."
            )
        member = Member(
            name=name, linkname=linkname, type=kind, size=size,
            mode=parse_number(header[100:108]), uid=parse_number(header[108:116]), gid=parse_number(header[116:124]),
        )
        self.check(member)
        self.stats.count(kind, size)
        if self.rewrite:
            self._out.extend(self._rewritten(group, header, member))
        data = 0 if kind in HEADER_ONLY else size
        if self.limit is not None:
            self.limit.check(self._at + padded_size(data))
        return data

    @staticmethod
    def _sparse_name(group: Group, kind: bytes, name: bytes) -> bytes:
        """A sparse file: only GNU tar's pax format 1.0 (`--format=pax --sparse`, the data
        helper's), whose GNU.sparse.name is the name GNU tar and Go both extract to (the
        header's is a placeholder); older GNU sparse forms are refused."""
        pax = group.pax
        if (kind not in (b"0", b"\0") or pax.get(b"GNU.sparse.major") != b"1" or pax.get(b"GNU.sparse.minor") != b"0"
                or b"GNU.sparse.name" not in pax or b"GNU.sparse.realsize" not in pax):
            raise UnsafeArchive(
                f"Refused: {show(group.long_name or pax.get(b'path') or name)!r} is an old-style GNU sparse "
                "member, which Cargohold does not restore (make the archive with --format=pax, or without --sparse)."
            )
        sparse_name = pax[b"GNU.sparse.name"]
        if group.long_name is not None or pax.get(b"path", sparse_name) != sparse_name:
            raise UnsafeArchive(
                f"Refused: the sparse member {show(sparse_name)!r} has two different names; tar programs "
                "disagree on which one counts."
            )
        return sparse_name

    # --- the rules ---------------------------------------------------------------------

    def check(self, member: Member) -> None:
        """Refuse the member (UnsafeArchive naming it) or remember what later ones need."""
        name = member.name
        if member.type not in TYPE_NAMES:
            raise UnsafeArchive(
                f"Refused: the member {show(name)!r} has the tar type {member.type.decode('latin-1')!r}, "
                "which Cargohold does not restore."
            )
        if member.type in DEVICES and not self.allow_devices:
            raise UnsafeArchive(
                f"Refused: the member {show(name)!r} is a {member.kind}. Device nodes are only restored "
                "when you allow them explicitly."
            )
        parts = split_path(name)
        if self._first_name is None:
            self._first_name = name
        under_data = bool(parts) and parts[0] == b"data"
        dotted = name == b"." or name.startswith(b"./")
        if not under_data and self._all_data:
            self._all_data, self._first_not_data = False, name
        if not dotted and self._all_dot:
            self._all_dot, self._first_not_dot = False, name
        if not self._all_data and not self._all_dot:
            raise UnsafeArchive(self._root_message(name))
        if self.expect is Layout.DATA and not under_data:
            raise UnsafeArchive(f"Refused: the member {show(name)!r} is not under data/.")
        if self.expect is Layout.DOT and not dotted:
            raise UnsafeArchive(f"Refused: the member {show(name)!r} is not under ./.")
        # The volume's root itself must stay a directory: a symlink or file there would swap it.
        # `./data` as a file is fine in a ./ archive (a file named data), so that case waits
        # for the layout.
        if member.type != DIRECTORY and (not parts or parts == (b"data",)):
            if not parts or not self._all_dot or self.expect is Layout.DATA:
                raise UnsafeArchive(self._root_replaced(name, member))
            if self._data_root_replaced is None:
                self._data_root_replaced = (name, member)
        if (link := self._symlink_on(parts)) is not None:
            raise UnsafeArchive(
                f"Refused: the member {show(name)!r} passes through the symlink "
                f"{show(link)!r} of the archive (it could write outside the volume)."
            )
        if member.type == HARDLINK:
            if not member.linkname:
                raise UnsafeArchive(f"Refused: the hardlink {show(name)!r} has no target.")
            try:
                target = split_path(member.linkname)
            except UnsafeArchive:
                raise UnsafeArchive(
                    f"Refused: the hardlink {show(name)!r} points outside the volume ({show(member.linkname)!r})."
                ) from None
            if (link := self._symlink_on(target)) is not None:
                raise UnsafeArchive(
                    f"Refused: the hardlink {show(name)!r} points through the symlink {show(link)!r} of the archive."
                )
            if target not in self._non_dirs:
                raise UnsafeArchive(
                    f"Refused: the hardlink {show(name)!r} points to {show(member.linkname)!r}, which is not "
                    "an earlier file of the archive (it could link to something outside the volume)."
                )
            # A hardlink to a symlink is a symlink.
            if target in self._symlinks:
                self._symlinks.add(parts)
            else:
                self._symlinks.discard(parts)
            self._non_dirs.add(parts)
        elif member.type == SYMLINK:
            self._symlinks.add(parts)
            self._non_dirs.add(parts)
        elif member.type == DIRECTORY:
            self._symlinks.discard(parts)
            self._non_dirs.discard(parts)
        else:
            self._symlinks.discard(parts)
            self._non_dirs.add(parts)

    def _symlink_on(self, parts: tuple[bytes, ...]) -> bytes | None:
        """The archive's symlink that a path passes through (a parent of it), if any."""
        for i in range(1, len(parts)):
            if parts[:i] in self._symlinks:
                return b"/".join(parts[:i])
        return None

    @staticmethod
    def _root_replaced(name: bytes, member: Member) -> str:
        return f"Refused: the member {show(name)!r} would replace the volume's root with a {member.kind}."

    def _root_message(self, name: bytes) -> str:
        first = self._first_name or name
        return (
            f"Refused: the archive's members do not share one root — {show(first)!r} and {show(name)!r}. "
            "Cargohold restores archives whose members are all under data/ (as `tar czf backup.tar.gz /data` "
            "makes them) or all under ./ (as `tar -C /data -czf backup.tar.gz .` makes them)."
        )

    def close(self) -> ScanResult:
        """The end of the stream: complete, and one known layout."""
        self._check_complete()
        if not self.stats.entries:
            raise ArchiveError("The archive is empty: it has no members.")
        if self._all_data and not (self._all_dot and self._data_root_replaced):
            if self._data_root_replaced:
                raise UnsafeArchive(self._root_replaced(*self._data_root_replaced))
            layout = Layout.DATA
        elif self._all_dot:
            layout = Layout.DOT
        else:  # pragma: no cover - refused as soon as both became false
            raise UnsafeArchive(self._root_message(self._first_not_data or b""))
        if self.expect is not None and layout is not self.expect:
            raise UnsafeArchive("Refused: the archive's layout changed since it was checked.")
        self.stats.complete = True
        return ScanResult(stats=self.stats, layout=layout)

    # --- rewriting ./ names to data/ ------------------------------------------------------

    def _rewritten(self, group: Group, header: bytes, member: Member) -> list[bytes]:
        parts = split_path(member.name)
        name = b"/".join((b"data", *parts))
        if member.type == DIRECTORY:
            name += b"/"
        link = member.linkname
        if member.type == HARDLINK:
            link = b"/".join((b"data", *split_path(member.linkname)))
        return renamed_pieces(group, header, member, name, link)


def renamed_pieces(group, header: bytes, member: Member, name: bytes, link: bytes) -> list[bytes]:
    """A member's headers with a new name (and hardlink target): the other pax records
    (times, xattrs, owners' names, size) kept as they were, GNU long-name records where
    the name is longer than the header's field. Used by the ./ → data/ rewrite and by
    backups.partial (names relative to a folder's parent)."""
    pieces: list[bytes] = []
    pax = {k: v for k, v in group.pax.items() if k not in (b"path", b"linkpath")}
    if b"GNU.sparse.name" in pax:
        pax[b"GNU.sparse.name"] = name
    for kind, meta_header, payload in group.blocks:
        if kind == PAX_GLOBAL:
            pieces.append(meta_header + padded(payload))
    if pax:
        template = next((h for k, h, _ in group.blocks if k == PAX), None)
        pieces.append(meta_block(template, PAX, encode_pax(pax)))
    out = bytearray(header)
    fmt = _header_names(header)[2]
    if len(name) > 100:
        pieces.append(meta_block(None, GNU_LONGNAME, name + b"\0"))
    if member.type in (HARDLINK, SYMLINK) and len(link) > 100:
        pieces.append(meta_block(None, GNU_LONGLINK, link + b"\0"))
    out[0:100] = name[:100].ljust(100, b"\0")
    if member.type in (HARDLINK, SYMLINK):
        out[157:257] = link[:100].ljust(100, b"\0")
    if fmt == "ustar":
        out[345:500] = bytes(155)
    elif fmt == "star":
        out[345:476] = bytes(131)
    pieces.append(with_checksum(out))
    return pieces
