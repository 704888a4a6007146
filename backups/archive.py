"""Archive streams: compression, hashing and a tar walker that counts without re-encoding.

A backup is the engine's own tar stream of the volume (members under `data/`), passed
unchanged through a compressor; nothing here rewrites tar headers, so owners, modes,
links, extended attributes and names that are not UTF-8 survive byte for byte.

The pieces, usable on their own (restore and import build on them):

- `TarWalker`: fed the bytes of a tar stream in chunks of any size, it checks each
  header's checksum, counts entries and data bytes, and knows whether the stream ended
  with the end-of-archive marker. It never copies file contents (it skips them by
  arithmetic), so it costs almost nothing per byte.
- `compressor(name)` / `decompressor(name)`: zstd (multi-threaded, `zstandard`) or gzip
  (stdlib zlib), with one small interface: `feed(bytes) -> bytes`, `finish() -> bytes`.
- `HashingWriter`: wraps a binary file, computing the SHA-256 of what is written.
- `iter_decompressed(reader, compression)`: bounded decompression (a chunk at a time).
- `verify_stream(chunks, compression=, sha256=)`: the full check of a stored archive.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import zstandard

from project.errors import CargoholdError

BLOCK = 512
CHUNK_SIZE = 1 << 20  # bytes read and written per step: memory stays bounded by a few of these
ZSTD_LEVEL = 3
GZIP_LEVEL = 6

COMPRESSIONS = ("zstd", "gzip")
EXTENSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz"}
MEDIA_TYPES = {"zstd": "application/zstd", "gzip": "application/gzip"}

# Members whose data is metadata for the next member, kept in memory: bounded.
_META_TYPES = {b"x", b"g", b"L", b"K"}
_META_LIMIT = 1 << 20
# Types that carry no data whatever their size field says (as Go's and Python's readers).
_HEADER_ONLY = {b"1", b"2", b"3", b"4", b"5", b"6"}


class ArchiveError(CargoholdError):
    """The bytes are not a complete, well-formed archive."""


# --- tar walker ----------------------------------------------------------------------


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


def _parse_number(field_bytes: bytes) -> int:
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

    Shared by the backup walker and the restore safety checker, so both refuse the same
    damaged streams with the same words.
    """
    if zero_blocks_before:
        raise ArchiveError("The archive has a zero block in the middle of its members.")
    if not _header_checksum_ok(header):
        raise ArchiveError(f"The archive is damaged: a tar header's checksum is wrong (at byte {at}).")
    kind = header[156:157]
    size = _parse_number(header[124:136])
    if kind in _META_TYPES and size > _META_LIMIT:
        raise ArchiveError("The archive has an extended header larger than 1 MiB.")
    return kind, size


def _header_checksum_ok(header: bytes) -> bool:
    stored = header[148:156]
    try:
        expected = _parse_number(stored)
    except ArchiveError:
        return False
    # The checksum is computed with its own field read as eight spaces.
    unsigned = sum(header) - sum(stored) + 8 * 32
    if unsigned == expected:
        return True
    # Some old writers summed signed bytes.
    signed = unsigned - 256 * sum(1 for b in header if b > 127) + 256 * sum(1 for b in stored if b > 127)
    return signed == expected


def _pax_size(records: bytes) -> int | None:
    """The `size` record of a pax header, if any ("<len> size=<n>\\n" records)."""
    pos, size = 0, None
    while pos < len(records):
        space = records.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(records[pos:space])
        except ValueError:
            raise ArchiveError("The archive has a malformed pax header.") from None
        if length <= 0 or pos + length > len(records):
            raise ArchiveError("The archive has a malformed pax header.")
        key, _, value = records[space + 1 : pos + length - 1].partition(b"=")
        if key == b"size":
            try:
                size = int(value)
            except ValueError:
                raise ArchiveError("The archive has a malformed pax size record.") from None
        pos += length
    return size


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
        if kind in _META_TYPES:
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
        if kind not in _HEADER_ONLY:
            self._skip = -(-size // BLOCK) * BLOCK

    def _finish_meta(self) -> None:
        meta, kind = bytes(self._meta or b""), self._meta_type
        self._meta = None
        if kind == b"x":
            size = _pax_size(meta)
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


# --- compression -----------------------------------------------------------------------


# zstd's default job size for multi-threading is 8 MiB at level 3, and it keeps several
# jobs' input and output in flight: ~145 MiB. 2 MiB jobs cost < 0.1 % of ratio and no
# speed here, and keep the compressor's memory near 40 MiB whatever the volume's size.
ZSTD_JOB_SIZE = 2 << 20


class _Zstd:
    def __init__(self, level: int, threads: int):
        # threads=-1: as many workers as CPUs; compression then runs beside our reading.
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, write_checksum=True, job_size=ZSTD_JOB_SIZE if threads else 0
        )
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def feed(self, data) -> bytes:
        return self._obj.compress(data)

    def finish(self) -> bytes:
        return self._obj.flush()


class _Gzip:
    """Single-threaded gzip (one member)."""

    def __init__(self, level: int):
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip header and trailer

    def feed(self, data) -> bytes:
        return self._obj.compress(data)

    def finish(self) -> bytes:
        return self._obj.flush()


GZIP_BLOCK = 4 << 20


class _ParallelGzip:
    """gzip on all cores, as pigz does: the stream is cut into 4 MiB blocks, each
    compressed on its own (zlib releases the GIL) into a gzip member, written in order.

    Concatenated members are one valid gzip file for gzip, GNU tar, busybox tar and
    Python; the ratio is within a fraction of a percent of one long member. Memory: the
    blocks in flight (threads + 2), each 4 MiB in and out.
    """

    def __init__(self, level: int, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        self._level = level
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip")
        self._pending = bytearray()
        self._futures: list = []

    def _compress(self, block: bytes) -> bytes:
        return zlib.compress(block, self._level, wbits=31)

    def _collect(self, *, wait_for: int) -> bytes:
        """Outputs of the oldest blocks: those done, and enough to leave `wait_for` in flight."""
        out = []
        while self._futures and (self._futures[0].done() or len(self._futures) > wait_for):
            out.append(self._futures.pop(0).result())
        return b"".join(out)

    def feed(self, data) -> bytes:
        self._pending += data
        if len(self._pending) < GZIP_BLOCK:
            return b""
        block, self._pending = bytes(self._pending), bytearray()
        self._futures.append(self._pool.submit(self._compress, block))
        return self._collect(wait_for=self._threads + 1)

    def finish(self) -> bytes:
        if self._pending or not self._futures:
            self._futures.append(self._pool.submit(self._compress, bytes(self._pending)))
            self._pending = bytearray()
        try:
            return self._collect(wait_for=0)
        finally:
            self._pool.shutdown(wait=True)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def compressor(name: str, *, level: int | None = None, threads: int = -1):
    """`threads=-1`: every CPU (zstd's own workers; gzip blocks in a thread pool)."""
    if name == "zstd":
        return _Zstd(ZSTD_LEVEL if level is None else level, threads)
    if name == "gzip":
        level = GZIP_LEVEL if level is None else level
        workers = (os.cpu_count() or 1) if threads < 0 else threads
        return _ParallelGzip(level, workers) if workers > 1 else _Gzip(level)
    raise ArchiveError(f"Unknown compression {name!r} (choose zstd or gzip).")


class _ZstdReader:
    def __init__(self):
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()

    def feed(self, data) -> bytes:
        if self._obj.eof:
            # Concatenated frames are valid zstd (and what `cat a.zst b.zst` makes).
            rest = bytes(data)
            self._obj = self._dctx.decompressobj()
            return self.feed(rest) if rest else b""
        try:
            out = self._obj.decompress(data)
            if self._obj.eof and self._obj.unused_data:
                out += self.feed(self._obj.unused_data)
            return out
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"The archive does not decompress (zstd: {exc}).") from None

    def finish(self) -> bytes:
        if not self._obj.eof:
            raise ArchiveError("The archive is truncated: the zstd stream does not end.")
        return b""


class _GzipReader:
    def __init__(self):
        self._obj = zlib.decompressobj(31)

    def feed(self, data) -> bytes:
        try:
            out = self._obj.decompress(data)
            # A gzip file may hold several members one after the other (pigz, cat).
            while self._obj.eof and self._obj.unused_data:
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                out += self._obj.decompress(rest)
            return out
        except zlib.error as exc:
            raise ArchiveError(f"The archive does not decompress (gzip: {exc}).") from None

    def finish(self) -> bytes:
        if not self._obj.eof:
            raise ArchiveError("The archive is truncated: the gzip stream does not end.")
        return b""


def decompressor(name: str):
    if name == "zstd":
        return _ZstdReader()
    if name == "gzip":
        return _GzipReader()
    raise ArchiveError(f"Unknown compression {name!r}.")


def detect_compression(head: bytes) -> str | None:
    """zstd or gzip from the first bytes of a file (for imports and rescans)."""
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return None


# --- hashing writer --------------------------------------------------------------------


class HashingWriter:
    """A binary file wrapper that hashes (SHA-256) and counts what passes through."""

    def __init__(self, fileobj):
        self._file = fileobj
        self._sha = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data) -> int:
        if data:
            self._sha.update(data)
            self._file.write(data)
            self.bytes_written += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


# --- the whole pipeline ----------------------------------------------------------------


@dataclass
class PackResult:
    stats: TarStats
    sha256: str
    compressed_bytes: int


def pack(
    chunks: Iterable[bytes], out, *, compression: str, on_chunk=None, level: int | None = None
) -> PackResult:
    """Compress the tar stream `chunks` into the binary file `out`, unchanged.

    Walks the same bytes to count entries and to prove the stream is complete (a
    connection that breaks mid-stream raises, it is never taken for the end).
    `on_chunk(n)` is called with each chunk's size (progress, cancellation checks).
    """
    walker = TarWalker()
    comp = compressor(compression, level=level)
    sink = HashingWriter(out)
    for chunk in chunks:
        walker.feed(chunk)
        sink.write(comp.feed(chunk))
        if on_chunk is not None:
            on_chunk(len(chunk))
    stats = walker.close()
    sink.write(comp.finish())
    return PackResult(stats=stats, sha256=sink.hexdigest(), compressed_bytes=sink.bytes_written)


class _ChunkReader:
    """A file-like reader over an iterator of chunks that hashes and counts what it takes."""

    def __init__(self, chunks: Iterable[bytes], on_chunk=None):
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")
        self._sha = hashlib.sha256()
        self._on_chunk = on_chunk
        self.total = 0

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._sha.update(chunk)
                self.total += len(chunk)
                if self._on_chunk is not None:
                    self._on_chunk(len(chunk))
                self._buffer = memoryview(chunk)
                return True
        return False

    def read(self, size: int = -1) -> bytes:
        if not self._buffer and not self._fill():
            return b""
        if size is None or size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out.tobytes()

    def drain(self) -> None:
        self._buffer = memoryview(b"")
        while self._fill():
            self._buffer = memoryview(b"")

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def iter_decompressed(reader, compression: str, *, chunk_size: int = CHUNK_SIZE):
    """Decompress a binary reader into chunks of at most `chunk_size` bytes.

    Bounded whatever the ratio (64 MiB of zeros, or a crafted archive, come out a chunk
    at a time). gzip: a stream that ends before its last member does raises ArchiveError.
    zstd: the library cannot tell a frame cut short from its end, so callers prove
    completeness otherwise (the tar end marker, the recorded SHA-256).
    """
    if compression == "zstd":
        stream = zstandard.ZstdDecompressor().stream_reader(
            reader, read_size=chunk_size, read_across_frames=True, closefd=False
        )
        try:
            while True:
                out = stream.read(chunk_size)
                if not out:
                    return
                yield out
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"The archive does not decompress (zstd: {exc}).") from None
    elif compression == "gzip":
        obj = zlib.decompressobj(31)
        pending = b""
        started = False
        try:
            while True:
                if not pending:
                    pending = reader.read(chunk_size)
                    if not pending:
                        break
                started = True
                out = obj.decompress(pending, chunk_size)
                if obj.eof:
                    # Several members one after the other (pigz, cat a.gz b.gz). At the end
                    # of a member, what follows is in unused_data (unconsumed_tail may
                    # repeat it: it must not be fed twice).
                    pending = obj.unused_data
                    obj = zlib.decompressobj(31)
                    if not pending:
                        pending = reader.read(chunk_size)
                        if not pending:
                            if out:
                                yield out
                            return
                else:
                    pending = obj.unconsumed_tail
                if out:
                    yield out
        except zlib.error as exc:
            raise ArchiveError(f"The archive does not decompress (gzip: {exc}).") from None
        if started:
            raise ArchiveError("The archive is truncated: the gzip stream does not end.")
        raise ArchiveError("The archive is empty.")
    else:
        raise ArchiveError(f"Unknown compression {compression!r}.")


@dataclass
class VerifyResult:
    ok: bool
    sha256: str
    compressed_bytes: int
    stats: TarStats | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.ok:
            return (
                f"Verified: SHA-256 matches, {self.stats.entries} entries, "
                f"{self.stats.data_bytes} bytes of file data, complete tar stream."
            )
        return "Verification failed: " + " ".join(self.problems)


def verify_stream(
    chunks: Iterable[bytes], *, compression: str, sha256: str | None = None, on_chunk=None
) -> VerifyResult:
    """Re-read a stored archive: its SHA-256, and that it decompresses to a complete tar.

    Memory is bounded (decompression a chunk at a time). Never raises for a bad archive:
    the problems are listed in the result.
    """
    reader = _ChunkReader(chunks, on_chunk)
    walker = TarWalker()
    problems: list[str] = []
    stats = None
    try:
        for out in iter_decompressed(reader, compression):
            walker.feed(out)
        stats = walker.close()
    except ArchiveError as exc:
        problems.append(str(exc))
    # Hash what the decompressor left unread, so the report says whether the bytes changed.
    reader.drain()
    actual = reader.hexdigest()
    if sha256 and actual != sha256:
        problems.insert(0, f"The SHA-256 of the stored file is {actual}, not the recorded {sha256}.")
    return VerifyResult(ok=not problems, sha256=actual, compressed_bytes=reader.total, stats=stats,
                        problems=problems)
