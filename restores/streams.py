"""Reading archives for restores and imports: format by content, bounded decompression,
hashing of the stored bytes as they are read.

Decompression is *bounded* (backups.archive.iter_decompressed): every chunk is at most
the size asked for, whatever the compression ratio, so a crafted archive (a few KiB that
expand to many GiB) cannot exhaust the worker's memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from backups.archive import BLOCK, CHUNK_SIZE, ArchiveError, _header_checksum_ok, iter_decompressed

FORMATS = ("zstd", "gzip", "tar")
FORMAT_NAMES = {"zstd": "tar.zst", "gzip": "tar.gz", "tar": "tar"}
_REFUSED_MAGIC = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
    b"7z\xbc\xaf\x27\x1c": "7-Zip",
    b"\x1f\x9d": "compress (.Z)",
    b"\x04\x22\x4d\x18": "lz4",
}


def detect_format(head: bytes) -> str:
    """zstd, gzip or tar from the first bytes (at least 512 for plain tar), else refuse."""
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    for magic, name in _REFUSED_MAGIC.items():
        if head.startswith(magic):
            raise ArchiveError(
                f"This is a {name} file. Cargohold imports tar archives, plain or compressed with "
                "gzip (.tar.gz, .tgz) or zstd (.tar.zst)."
            )
    if len(head) >= BLOCK and (head[257:262] == b"ustar" or _header_checksum_ok(head[:BLOCK])) and any(head[:BLOCK]):
        return "tar"
    raise ArchiveError(
        "This is not a tar archive (nor a gzip- or zstd-compressed one): its first bytes match no known format."
    )


class HashingReader:
    """A binary reader that hashes (SHA-256) and counts what is read through it; `on_read(n)`
    is told each read's size (progress, cancellation), and `sink` (optional) gets a copy."""

    def __init__(self, raw, *, on_read: Callable[[int], None] | None = None, sink=None):
        self._raw = raw
        self._sha = hashlib.sha256()
        self.bytes_read = 0
        self._on_read = on_read
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size if size and size > 0 else CHUNK_SIZE)
        except OSError as exc:
            raise ArchiveError(f"Reading the archive failed: {exc.strerror or exc}.") from None
        if data:
            self._sha.update(data)
            self.bytes_read += len(data)
            if self._sink is not None:
                self._sink.write(data)
            if self._on_read is not None:
                self._on_read(len(data))
        return data

    def drain(self) -> None:
        """Read (and hash) whatever the decompressor left unread."""
        while self.read(CHUNK_SIZE):
            pass

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _plain_chunks(reader, size: int) -> Iterator[bytes]:
    while True:
        data = reader.read(size)
        if not data:
            return
        yield data


def tar_chunks(reader, compression: str, *, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The uncompressed tar stream of `reader`, in chunks of at most `size` bytes.

    Decompression is the backups app's bounded `iter_decompressed`: a truncated zstd
    stream simply ends (the tar parser then finds the tar incomplete); a truncated gzip
    stream, bad data or trailing garbage raise ArchiveError.
    """
    if compression == "tar":
        return _plain_chunks(reader, size)
    if compression not in FORMATS:
        raise ArchiveError(f"Unknown archive format {compression!r}.")
    return iter_decompressed(reader, compression, chunk_size=size)
