"""Hashing (SHA-256) and counting what passes: a writer for what we store, a reader for
what we read back, and a file-like view of an iterator of chunks (a storage or engine
stream) so both kinds of source go through the same reader."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from tarstream.compression import CHUNK_SIZE
from tarstream.headers import ArchiveError


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


class ChunkFile:
    """A binary reader over an iterator of chunks (nothing copied but the chunk being read)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = memoryview(chunk)
        if size is None or size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out.tobytes()
