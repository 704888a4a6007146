"""Compression: zstd (multi-threaded, `zstandard`) and gzip (stdlib zlib, parallel blocks
as pigz makes them), detection of a file's format from its content, and bounded
decompression: every chunk is at most the size asked for whatever the ratio, so a crafted
archive (a few KiB that expand to many GiB) cannot exhaust the worker's memory.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import zstandard

from tarstream.headers import BLOCK, ArchiveError, header_checksum_ok

CHUNK_SIZE = 1 << 20  # bytes read and written per step: memory stays bounded by a few of these
ZSTD_LEVEL = 3
GZIP_LEVEL = 6

COMPRESSIONS = ("zstd", "gzip")
EXTENSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz"}
MEDIA_TYPES = {"zstd": "application/zstd", "gzip": "application/gzip"}


# zstd's default job size for multi-threading is 8 MiB at level 3, and it keeps several
# jobs' input and output in flight: ~145 MiB. 2 MiB jobs cost < 0.1 % of ratio and no
# speed here, and keep the compressor's memory near 40 MiB whatever the volume's size.
ZSTD_JOB_SIZE = 2 << 20


class _Streaming:
    """A compressor over a library's compress object (`_obj`)."""

    _obj = None

    def feed(self, data) -> bytes:
        return self._obj.compress(data)

    def finish(self) -> bytes:
        return self._obj.flush()


class _Zstd(_Streaming):
    def __init__(self, level: int, threads: int):
        # threads=-1: as many workers as CPUs; compression then runs beside our reading.
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, write_checksum=True, job_size=ZSTD_JOB_SIZE if threads else 0
        )
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()


class _FramedZstd:
    """zstd that ends a frame every `frame_bytes` of input: independent frames, one valid
    stream (`zstd -dc` reads them as one). `frames` lists `[input_offset, output_offset]`
    of every frame as it begins (tarstream.frames explains what they are for)."""

    def __init__(self, level: int, threads: int, frame_bytes: int):
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, write_checksum=True, job_size=ZSTD_JOB_SIZE if threads else 0
        )
        self._cctx = zstandard.ZstdCompressor(compression_params=params)
        self._obj = None
        self._frame_bytes = frame_bytes
        self._room = 0
        self._in = 0
        self._out = 0
        self.frames: list[list[int]] = []

    def _begin(self) -> None:
        self.frames.append([self._in, self._out])
        self._obj = self._cctx.compressobj()
        self._room = self._frame_bytes

    def feed(self, data) -> bytes:
        view = memoryview(data)
        pieces = []
        while view:
            if self._obj is None:
                self._begin()
            take = min(self._room, len(view))
            piece = self._obj.compress(view[:take])
            view = view[take:]
            self._in += take
            self._room -= take
            if not self._room:
                piece += self._obj.flush()
                self._obj = None
            self._out += len(piece)
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def finish(self) -> bytes:
        if self._obj is None and not self.frames:
            self._begin()  # an empty stream is still one frame
        if self._obj is None:
            return b""
        out = self._obj.flush()
        self._obj = None
        self._out += len(out)
        return out


class _Gzip(_Streaming):
    """Single-threaded gzip (one member)."""

    def __init__(self, level: int):
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip header and trailer


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


def compressor(name: str, *, level: int | None = None, threads: int = -1, frame_bytes: int | None = None):
    """`threads=-1`: every CPU (zstd's own workers; gzip blocks in a thread pool).
    `frame_bytes` (zstd): end a frame every so many bytes of input (its `frames` say where)."""
    if name == "zstd":
        if frame_bytes:
            return _FramedZstd(ZSTD_LEVEL if level is None else level, threads, frame_bytes)
        return _Zstd(ZSTD_LEVEL if level is None else level, threads)
    if name == "gzip":
        level = GZIP_LEVEL if level is None else level
        workers = (os.cpu_count() or 1) if threads < 0 else threads
        return _ParallelGzip(level, workers) if workers > 1 else _Gzip(level)
    raise ArchiveError(f"Unknown compression {name!r} (choose zstd or gzip).")


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
    """zstd, gzip or tar from the first bytes (at least 512 for plain tar), else refuse.

    A valid tar header is recognised first: its name (or a pax header's) may begin with a
    compression magic, and a compressed file never starts with a block whose tar
    checksum and ustar magic hold.
    """
    if len(head) >= BLOCK and head[257:262] == b"ustar" and header_checksum_ok(head[:BLOCK]):
        return "tar"
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
    if len(head) >= BLOCK and (head[257:262] == b"ustar" or header_checksum_ok(head[:BLOCK])) and any(head[:BLOCK]):
        return "tar"
    raise ArchiveError(
        "This is not a tar archive (nor a gzip- or zstd-compressed one): its first bytes match no known format."
    )


def detect_compression(head: bytes) -> str | None:
    """zstd or gzip from the first bytes of a file, None otherwise (plain tar included)."""
    try:
        fmt = detect_format(head)
    except ArchiveError:
        return None
    return fmt if fmt in COMPRESSIONS else None


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


def _plain_chunks(reader, size: int) -> Iterator[bytes]:
    while True:
        data = reader.read(size)
        if not data:
            return
        yield data


def tar_chunks(reader, compression: str, *, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The uncompressed tar stream of `reader`, in chunks of at most `size` bytes.

    Decompression is the bounded `iter_decompressed`: a truncated zstd
    stream simply ends (the tar parser then finds the tar incomplete); a truncated gzip
    stream, bad data or trailing garbage raise ArchiveError.
    """
    if compression == "tar":
        return _plain_chunks(reader, size)
    if compression not in FORMATS:
        raise ArchiveError(f"Unknown archive format {compression!r}.")
    return iter_decompressed(reader, compression, chunk_size=size)
