"""Tar header blocks: numbers, checksums, pax records, and the few headers Cargohold writes.

Shared by the walker (backups, restores, imports: tarstream.walker, with the safety rules
of tarstream.scanner on top for untrusted streams) and the engine adapter (the lead
header), so all read and refuse alike.
"""

from __future__ import annotations

from project.errors import CargoholdError

BLOCK = 512
META_LIMIT = 1 << 20  # a pax header or GNU long name larger than this is refused
REGULAR = {b"0", b"\0", b"7"}
HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
# Types that carry no data whatever their size field says (as Go's and Python's readers).
HEADER_ONLY = {HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO}
PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK = b"x", b"g", b"L", b"K"
# Members whose data is metadata for the next member, kept in memory: bounded.
META = {PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK}
USTAR_MAGIC = b"ustar\x00"
GNU_MAGIC = b"ustar  \x00"


class ArchiveError(CargoholdError):
    """The bytes are not a complete, well-formed archive."""


def cstring(raw: bytes) -> bytes:
    """A NUL-terminated header field, as Go's reader cuts it."""
    return raw.split(b"\0", 1)[0]


def parse_number(field_bytes: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    if field_bytes and field_bytes[0] & 0x80:
        value = int.from_bytes(field_bytes[1:], "big")
        if field_bytes[0] & 0x40:  # negative base-256: never valid for sizes
            raise ArchiveError("The archive has a tar header with a negative size.")
        return value
    text = field_bytes.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ArchiveError("The archive has a tar header with an unreadable number.") from None


def member_header(header: bytes, *, zero_blocks_before: int, at: int) -> tuple[bytes, int]:
    """Check a member's (non-zero) tar header; return its type flag and size.

    The one header check of the walker, trusted stream or not: all refuse the same
    damaged streams with the same words.
    """
    if zero_blocks_before:
        raise ArchiveError("The archive has a zero block in the middle of its members.")
    if not header_checksum_ok(header):
        raise ArchiveError(f"The archive is damaged: a tar header's checksum is wrong (at byte {at}).")
    kind = header[156:157]
    size = parse_number(header[124:136])
    if kind in META and size > META_LIMIT:
        raise ArchiveError("The archive has an extended header larger than 1 MiB.")
    return kind, size


def header_checksum_ok(header: bytes) -> bool:
    stored = header[148:156]
    try:
        expected = parse_number(stored)
    except ArchiveError:
        return False
    # The checksum is computed with its own field read as eight spaces.
    unsigned = sum(header) - sum(stored) + 8 * 32
    if unsigned == expected:
        return True
    # Some old writers summed signed bytes.
    signed = unsigned - 256 * sum(1 for b in header if b > 127) + 256 * sum(1 for b in stored if b > 127)
    return signed == expected



def parse_pax(records: bytes) -> dict[bytes, bytes]:
    """pax extended header records ("<len> <key>=<value>\\n"), strictly: malformed -> error."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(records):
        if records[pos:].strip(b"\0") == b"":  # padding some writers leave
            break
        space = records.find(b" ", pos)
        if space < 0 or space - pos > 20:
            raise ArchiveError("The archive has a malformed pax header.")
        try:
            length = int(records[pos:space])
        except ValueError:
            raise ArchiveError("The archive has a malformed pax header.") from None
        end = pos + length
        if length <= 0 or end > len(records) or records[end - 1 : end] != b"\n":
            raise ArchiveError("The archive has a malformed pax header.")
        key, eq, value = records[space + 1 : end - 1].partition(b"=")
        if not eq or not key:
            raise ArchiveError("The archive has a malformed pax header.")
        out[key] = value
        pos = end
    return out


def pax_size(records: dict[bytes, bytes]) -> int | None:
    """The `size` record of parsed pax records, if any."""
    if b"size" not in records:
        return None
    try:
        size = int(records[b"size"])
    except ValueError:
        raise ArchiveError("The archive has a malformed pax size record.") from None
    if size < 0:
        raise ArchiveError("The archive has a negative member size.")
    return size


def encode_pax(records: dict[bytes, bytes]) -> bytes:
    out = bytearray()
    for key, value in records.items():
        body = b" " + key + b"=" + value + b"\n"
        length = len(body) + 1
        while len(str(length).encode()) + len(body) != length:
            length += 1
        out += str(length).encode() + body
    return bytes(out)


def padded(payload: bytes) -> bytes:
    return payload + bytes(-len(payload) % BLOCK)


def padded_size(size: int) -> int:
    """The bytes `size` bytes of member data take in the stream: whole blocks."""
    return -(-size // BLOCK) * BLOCK


def with_checksum(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _blank_header(name: bytes, *, mode: bytes, kind: bytes, magic: bytes) -> bytearray:
    """A header of ours: owned by root, time 0, no data (callers set a size if they need one)."""
    header = bytearray(BLOCK)
    header[0:len(name)] = name
    header[100:108] = mode
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = b"00000000000\0"
    header[136:148] = b"00000000000\0"
    header[156:157] = kind
    header[257:257 + len(magic)] = magic
    return header


def meta_block(template: bytes | None, kind: bytes, payload: bytes) -> bytes:
    """A meta header (pax or GNU long name) followed by its padded payload."""
    if template is not None:
        header = bytearray(template)
    else:
        header = _blank_header(b"././@LongLink", mode=b"0000644\0", kind=kind, magic=GNU_MAGIC)
    header[156:157] = kind
    header[124:136] = b"%011o\0" % len(payload)
    return with_checksum(header) + padded(payload)


def _lead_header() -> bytes:
    """The first header of every stream Cargohold sends to the engine: a ustar directory
    entry for `./`, the extraction root itself, which the engine skips (an existing
    directory named `.`). It exists for its first bytes: the engine's archive endpoint
    sniffs them and would run xz, bzip2, gzip or zstd as root on whatever follows if they
    were a compression magic, and without it an archive's first member (or its pax or
    long-name header, whose names are free text) would choose them."""
    return with_checksum(_blank_header(b"./", mode=b"0000755\0", kind=DIRECTORY, magic=USTAR_MAGIC + b"00"))


LEAD_HEADER = _lead_header()
