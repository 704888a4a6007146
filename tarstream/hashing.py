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
            self._hand_on(data)
        return data

    def _hand_on(self, data) -> None:
        """What every read does with what it returns: counted, copied to the sink, told."""
        self.bytes_read += len(data)
        if self._sink is not None:
            self._sink.write(data)
        if self._on_read is not None:
            self._on_read(len(data))

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


class ReadAheadHashingReader(HashingReader):
    """A HashingReader whose reading and hashing run in a thread of their own, `depth`
    chunks ahead of the consumer: the SHA-256 (hashlib lets go of the GIL) then overlaps
    what the consumer does with the bytes (zstd's decompression lets go of it too), and a
    storage read's wait overlaps both. `on_read(n)` and `sink.write(chunk)` are called in
    the consumer's thread as it reads, as HashingReader calls them (a sink still gets a
    chunk only when the consumer asks for it). `hexdigest()` and `bytes_read` are final
    once read() returned b"" (or after `drain()`). `close()` (also on errors) stops the
    thread before the caller closes `raw`. Memory: `depth` chunks."""

    def __init__(self, raw, *, on_read: Callable[[int], None] | None = None, sink=None, depth: int = 4,
                 chunk_size: int = CHUNK_SIZE):
        import queue
        import threading

        super().__init__(raw, on_read=on_read, sink=sink)
        self._chunk_size = chunk_size
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buffer = memoryview(b"")
        self._ended = False
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="archive read-ahead")
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._raw.read(self._chunk_size)
                if not data:
                    break
                self._sha.update(data)
                if not self._put(data):
                    return
        except OSError as exc:
            self._error = exc.strerror or str(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._error = str(exc) or type(exc).__name__
        self._put(None)

    def _next(self) -> bool:
        if self._ended:
            return False
        data = self._queue.get()
        if data is None:
            self._ended = True
            self._thread.join()
            if self._error is not None:
                raise ArchiveError(f"Reading the archive failed: {self._error}.")
            return False
        self._buffer = memoryview(data)
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._buffer and not self._next():
            return b""
        if size is None or size <= 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, memoryview(b"")
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        data = out.tobytes() if len(out) != len(out.obj) else out.obj
        self._hand_on(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever the consumer left unread."""
        while self.read(self._chunk_size):
            pass

    def hexdigest(self) -> str:
        if not self._ended:
            raise RuntimeError("the read-ahead has not reached the end yet")
        return self._sha.hexdigest()

    def close(self) -> None:
        self._stop.set()
        import queue

        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._buffer = memoryview(b"")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
