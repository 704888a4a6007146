"""The whole pipelines: a backup's tar stream compressed into storage unchanged (`pack`),
or stored as the data helper compressed it (`store_compressed`), and a stored archive
read back in full (`verify_stream`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tarstream.compression import compressor, iter_decompressed
from tarstream.hashing import ChunkFile, HashingReader, HashingWriter
from tarstream.frames import iter_framed
from tarstream.headers import ArchiveError
from tarstream.index import walker_for
from tarstream.walker import TarStats, TarWalker


@dataclass
class PackResult:
    stats: TarStats
    sha256: str
    compressed_bytes: int
    # zstd: [tar_offset, compressed_offset] of every frame (tarstream.frames); None for gzip.
    frames: list | None = None


def pack(
    chunks: Iterable[bytes], out, *, compression: str, on_chunk=None, level: int | None = None,
    frame_bytes: int | None = None, on_entry=None,
) -> PackResult:
    """Compress the tar stream `chunks` into the binary file `out`, unchanged.

    Walks the same bytes to count entries and to prove the stream is complete (a
    connection that breaks mid-stream raises, it is never taken for the end).
    `on_chunk(n)` is called with each chunk's size (progress, cancellation checks).
    `frame_bytes` (zstd): a new frame every so many bytes of tar; `on_entry(entry)` gets
    every member's index entry (tarstream.index).
    """
    walker = walker_for(on_entry)
    comp = compressor(compression, level=level, frame_bytes=frame_bytes if compression == "zstd" else None)
    sink = HashingWriter(out)
    for chunk in chunks:
        walker.feed(chunk)
        sink.write(comp.feed(chunk))
        if on_chunk is not None:
            on_chunk(len(chunk))
    stats = walker.close()
    sink.write(comp.finish())
    return PackResult(stats=stats, sha256=sink.hexdigest(), compressed_bytes=sink.bytes_written,
                      frames=getattr(comp, "frames", None))


def store_compressed(chunks: Iterable[bytes], out, *, compression: str, on_chunk=None,
                     on_entry=None) -> PackResult:
    """Store an already compressed tar stream (the data helper's) into `out`, unchanged,
    hashing it and proving on the way that it decompresses to a complete tar.

    The proof is made on the very bytes stored: a stream that breaks off, or does not
    decompress, raises ArchiveError (TarWalker) before anything is committed. Memory is
    bounded (decompression a chunk at a time, whatever the ratio). `on_chunk(n)` gets the
    size of each compressed chunk.
    """
    reader = HashingReader(ChunkFile(chunks), on_read=on_chunk, sink=out)
    walker = walker_for(on_entry)
    frames = [] if compression == "zstd" else None
    # zstd: frame by frame, so where each frame starts is known exactly (tarstream.frames).
    pieces = iter_framed(reader, frames) if frames is not None else iter_decompressed(reader, compression)
    for piece in pieces:
        walker.feed(piece)
    reader.drain()  # what follows the last frame is stored too (and would be garbage: refused above)
    stats = walker.close()
    return PackResult(stats=stats, sha256=reader.hexdigest(), compressed_bytes=reader.bytes_read, frames=frames)


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
    reader = HashingReader(ChunkFile(chunks), on_read=on_chunk)
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
    return VerifyResult(ok=not problems, sha256=actual, compressed_bytes=reader.bytes_read, stats=stats,
                        problems=problems)
