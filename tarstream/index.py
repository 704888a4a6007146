"""The file index of a tar stream, read by the walker on the way (backups).

`IndexingWalker` is the walker (tarstream.walker) that also hands every member's facts to
a sink as its header passes: path relative to the volume's root (the `data/` prefix
stripped; the root itself left out), kind, size, mode, owner, mtime (pax sub-second when
present), link target, and `offset`, where the member's first header block (pax or GNU
long-name records included) starts in the uncompressed tar stream. It costs one small
dict per member and nothing per byte: the walker's block loop is unchanged.

Names are bytes in tar; the index keeps text: a name that is not UTF-8 is kept with its
bytes escaped (`caf\\xe9`, as `entry_path` writes it), the same way when the index is
written and when a member is looked up again (backups.partial).
"""

from __future__ import annotations

from tarstream.headers import BLOCK, DIRECTORY, HARDLINK, REGULAR, SYMLINK, cstring, parse_number
from tarstream.walker import Group, TarWalker

KINDS = {DIRECTORY: "d", SYMLINK: "l", HARDLINK: "h"}


def text(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def relative_parts(name: bytes) -> tuple[bytes, ...]:
    """A member's path relative to the volume's root: `data/a/b`, `./data/a/b` -> (a, b)."""
    parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
    if parts and parts[0] == b"data":
        parts = parts[1:]
    return parts


def entry_path(name: bytes) -> str:
    return text(b"/".join(relative_parts(name)))


def member_name(header: bytes, kind: bytes, group: Group | None) -> tuple[bytes, bytes]:
    """(name, link target) as GNU tar and Go read them: a GNU long name beats a pax path,
    which beats the ustar prefix + name; a sparse member's is GNU.sparse.name."""
    name = cstring(header[0:100])
    link = cstring(header[157:257])
    if header[257:263] == b"ustar\x00":
        star = header[508:512] == b"tar\x00"
        prefix = cstring(header[345:476] if star else header[345:500])
        if prefix:
            name = prefix + b"/" + name
    if group is not None:
        pax = group.pax
        if b"GNU.sparse.name" in pax:
            name = pax[b"GNU.sparse.name"]
        elif b"path" in pax:
            name = pax[b"path"]
        if b"linkpath" in pax:
            link = pax[b"linkpath"]
        if group.long_name is not None:
            name = group.long_name
        if group.long_link is not None:
            link = group.long_link
    return name, link


def _pax_number(pax: dict, key: bytes, default, convert=int):
    value = pax.get(key)
    if value is None:
        return default
    try:
        return convert(value)
    except ValueError:
        return default


def member_entry(header: bytes, kind: bytes, size: int, group: Group | None, offset: int) -> dict | None:
    """The index entry of one member, or None for the volume's root itself."""
    name, link = member_name(header, kind, group)
    parts = relative_parts(name)
    if not parts:
        return None
    if kind == b"\0" and name.endswith(b"/"):
        kind = DIRECTORY
    pax = group.pax if group is not None else {}
    letter = "f" if kind in REGULAR else KINDS.get(kind, "o")
    if letter == "f":
        size = group.declared_size(size) if group is not None else size
        size = _pax_number(pax, b"GNU.sparse.realsize", size)
    else:
        size = 0
    if letter == "h":
        link = b"/".join(relative_parts(link))
    mtime = _pax_number(pax, b"mtime", None, float)
    if mtime is None:
        mtime = float(parse_number(header[136:148]))
    return {
        "path": text(b"/".join(parts)),
        "parent": text(b"/".join(parts[:-1])),
        "name": text(parts[-1]),
        "kind": letter,
        "size": size,
        "mode": parse_number(header[100:108]) & 0o7777,
        "uid": _pax_number(pax, b"uid", parse_number(header[108:116])),
        "gid": _pax_number(pax, b"gid", parse_number(header[116:124])),
        "mtime": mtime,
        "link": text(link) if letter in ("l", "h") else "",
        "offset": offset,
    }


class IndexingWalker(TarWalker):
    """The walker, plus every member's index entry handed to `sink(entry)` (a dict)."""

    def __init__(self, sink, **kwargs):
        super().__init__(**kwargs)
        self._sink = sink

    def _member(self, header: bytes, kind: bytes, size: int, group: Group | None) -> int:
        data = super()._member(header, kind, size, group)
        offset = group.start if group is not None else self._at - BLOCK
        entry = member_entry(header, kind, size, group, offset)
        if entry is not None:
            self._sink(entry)
        return data


def walker_for(on_entry=None) -> TarWalker:
    return TarWalker() if on_entry is None else IndexingWalker(on_entry)
