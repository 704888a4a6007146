"""zstd frames: where they start in a compressed stream, read as the bytes pass.

A Cargohold archive is a sequence of independent zstd frames, each holding a fixed amount
of the tar stream (BACKUP_FRAME_BYTES, 32 MiB by default). Concatenated frames are one
valid zstd stream (`zstd -dc`, `tar --zstd -xf` read them as before); knowing where each
frame starts lets a single file be read by decompressing only the frames that hold it
(backups.partial).

`FrameWalker` parses frame and block headers only (no decompression): it costs a few
Python steps per compressed block (<= 128 KiB) and keeps nothing but the frames' start
offsets (bounded by `max_frames`). Everything about the stream is untrusted: a damaged,
truncated or crafted stream raises ArchiveError, never loops and never allocates more
than a header (18 bytes).

`iter_framed` decompresses a zstd stream frame by frame, in bounded chunks, and records
for every frame `[tar_offset, compressed_offset]`: where its uncompressed bytes start in
the tar stream and where its compressed bytes start in the file.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import zstandard

from tarstream.headers import ArchiveError

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC = 0x184D2A50
BLOCK_MAX = 128 << 10  # the largest block the format allows (Block_Maximum_Size)
MAX_FRAMES = 1 << 20  # 32 TiB of tar in 32 MiB frames: more is not an archive of ours

_MAGIC, _DESCRIPTOR, _HEADER_REST, _BLOCK_HEADER, _BLOCK_BODY, _CHECKSUM, _SKIP_SIZE, _SKIP_BODY = range(8)


def _header_rest_size(descriptor: int) -> int:
    """Bytes of the frame header after its descriptor: window, dictionary id, content size."""
    if descriptor & 0x08:
        raise ArchiveError("The archive is not a valid zstd stream (a frame header's reserved bit is set).")
    single_segment = descriptor & 0x20
    fcs_flag = descriptor >> 6
    fcs = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    dict_id = (0, 1, 2, 4)[descriptor & 0x03]
    window = 0 if single_segment else 1
    return window + dict_id + fcs


class FrameWalker:
    """Feed compressed bytes in chunks of any size; `starts` lists the offset of every data
    frame; `close()` says the stream ended on a frame's end. `pending` holds, for frames a
    reader has not consumed yet, `[start, is_data, end]` (end None while unknown)."""

    def __init__(self, *, max_frames: int = MAX_FRAMES):
        self.max_frames = max_frames
        self.starts: list[int] = []
        self.pending: deque = deque()
        self.offset = 0  # bytes fed so far
        self._state = _MAGIC
        self._need = 4  # bytes the current field needs
        self._field = bytearray()  # a field being assembled across chunks (at most 8 bytes)
        self._checksum = False
        self._last_block = False
        self._frames_seen = 0

    def feed(self, data) -> None:
        view = memoryview(data)
        n = len(view)
        pos = 0
        while pos < n:
            state = self._state
            if state == _BLOCK_BODY or state == _SKIP_BODY:
                take = min(self._need, n - pos)
                pos += take
                self._need -= take
                if not self._need:
                    if state == _SKIP_BODY:
                        self._frame_end(self.offset + pos)
                    else:
                        self._block_done(self.offset + pos)
                continue
            take = min(self._need - len(self._field), n - pos)
            self._field += view[pos : pos + take]
            pos += take
            if len(self._field) < self._need:
                break
            field = bytes(self._field)
            self._field.clear()
            self._field_done(field, self.offset + pos)
        self.offset += n

    def _field_done(self, field: bytes, at: int) -> None:
        state = self._state
        if state == _MAGIC:
            magic = int.from_bytes(field, "little")
            start = at - 4
            self._frames_seen += 1
            if self._frames_seen > self.max_frames:
                raise ArchiveError(f"The archive has more than {self.max_frames} zstd frames.")
            if magic == ZSTD_MAGIC:
                self.starts.append(start)
                self.pending.append([start, True, None])
                self._state, self._need = _DESCRIPTOR, 1
            elif magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
                self.pending.append([start, False, None])
                self._state, self._need = _SKIP_SIZE, 4
            else:
                raise ArchiveError(f"The archive is not a valid zstd stream (no frame starts at byte {start}).")
        elif state == _DESCRIPTOR:
            descriptor = field[0]
            self._checksum = bool(descriptor & 0x04)
            rest = _header_rest_size(descriptor)
            if rest:
                self._state, self._need = _HEADER_REST, rest
            else:
                self._state, self._need = _BLOCK_HEADER, 3
        elif state == _HEADER_REST:
            self._state, self._need = _BLOCK_HEADER, 3
        elif state == _BLOCK_HEADER:
            header = int.from_bytes(field, "little")
            self._last_block = bool(header & 1)
            block_type = (header >> 1) & 3
            size = header >> 3
            if block_type == 3:
                raise ArchiveError(f"The archive is not a valid zstd stream (a reserved block type at byte {at - 3}).")
            if size > BLOCK_MAX:
                raise ArchiveError(f"The archive is not a valid zstd stream (a block of {size} bytes at byte {at - 3}).")
            body = 1 if block_type == 1 else size  # RLE: one byte, repeated `size` times
            if body:
                self._state, self._need = _BLOCK_BODY, body
            else:
                self._block_done(at)
        elif state == _CHECKSUM:
            self._frame_end(at)
        elif state == _SKIP_SIZE:
            size = int.from_bytes(field, "little")
            if size:
                self._state, self._need = _SKIP_BODY, size
            else:
                self._frame_end(at)

    def _block_done(self, at: int) -> None:
        if not self._last_block:
            self._state, self._need = _BLOCK_HEADER, 3
        elif self._checksum:
            self._state, self._need = _CHECKSUM, 4
        else:
            self._frame_end(at)

    def _frame_end(self, at: int) -> None:
        self.pending[-1][2] = at
        self._state, self._need = _MAGIC, 4

    @property
    def between_frames(self) -> bool:
        return self._state == _MAGIC and not self._field

    def close(self) -> list[int]:
        """The data frames' start offsets; ArchiveError if the stream ended inside a frame
        or held no frame at all."""
        if not self.between_frames:
            raise ArchiveError("The archive is truncated: its last zstd frame is incomplete.")
        if not self.starts:
            raise ArchiveError("The archive is empty: it holds no zstd frame.")
        return self.starts


class _FrameSource:
    """A reader over `raw` that hands out one frame at a time: `read` returns b"" at the
    end of the current frame, so a decompressor given this reader never sees past it;
    `next_frame()` moves on to the next data frame (over skippable ones)."""

    def __init__(self, raw, walker: FrameWalker, *, chunk_size: int):
        self._raw = raw
        self._walker = walker
        self._chunk_size = chunk_size
        self._buffer = memoryview(b"")
        self._at = 0  # the offset of the next byte handed out
        self._frame: list | None = None  # the walker's [start, is_data, end] being read

    def _fill(self) -> bool:
        data = self._raw.read(self._chunk_size)
        if not data:
            return False
        self._walker.feed(data)
        # Only a few bytes (a magic number cut in two) can be left over when filling.
        self._buffer = memoryview(self._buffer.tobytes() + bytes(data)) if self._buffer else memoryview(data)
        return True

    def _drop(self, n: int) -> None:
        self._buffer = self._buffer[n:]
        self._at += n

    def next_frame(self) -> int | None:
        """Go to the next data frame: its compressed offset, or None at the stream's end."""
        pending = self._walker.pending
        if self._frame is not None:
            if self._frame[2] is None:
                raise ArchiveError("The archive is truncated: its last zstd frame is incomplete.")
            if self._frame[2] != self._at:
                raise ArchiveError("The archive is damaged: a zstd frame ends before its declared end.")
            pending.popleft()
            self._frame = None
        while True:
            while not (pending and pending[0][0] == self._at):
                if pending and pending[0][0] < self._at:  # pragma: no cover - consumed frames are popped
                    pending.popleft()
                    continue
                if not self._fill():
                    if self._at == self._walker.offset and self._walker.between_frames:
                        return None
                    self._walker.close()
                    raise ArchiveError("The archive is truncated: its last zstd frame is incomplete.")
            frame = pending[0]
            if frame[1]:
                self._frame = frame
                return self._at
            while frame[2] is None or self._at < frame[2]:  # a skippable frame: passed over
                if not self._buffer and not self._fill():
                    raise ArchiveError("The archive is truncated: it ends inside a skippable zstd frame.")
                end = frame[2]
                self._drop(len(self._buffer) if end is None else min(len(self._buffer), end - self._at))
            pending.popleft()

    def read(self, size: int = -1) -> bytes:
        frame = self._frame
        if frame is None:
            return b""
        if not self._buffer and not self._fill():
            return b""
        end = frame[2]
        limit = len(self._buffer) if end is None else min(len(self._buffer), end - self._at)
        if size is not None and size >= 0:
            limit = min(limit, size)
        if limit <= 0:
            return b""
        out = self._buffer[:limit].tobytes()
        self._drop(limit)
        return out


def iter_framed(reader, frames: list, *, chunk_size: int = 1 << 20,
                max_frames: int = MAX_FRAMES) -> Iterator[bytes]:
    """Decompress the zstd stream `reader` frame by frame, in chunks of at most
    `chunk_size` (bounded whatever the ratio); append `[tar_offset, compressed_offset]`
    to `frames` as each frame begins. Raises ArchiveError for a damaged or truncated
    stream (the frame walker's words, or zstd's)."""
    walker = FrameWalker(max_frames=max_frames)
    source = _FrameSource(reader, walker, chunk_size=chunk_size)
    tar = 0
    dctx = zstandard.ZstdDecompressor()
    while (start := source.next_frame()) is not None:
        frames.append([tar, start])
        stream = dctx.stream_reader(source, read_size=chunk_size, read_across_frames=False, closefd=False)
        try:
            while True:
                out = stream.read(chunk_size)
                if not out:
                    break
                tar += len(out)
                yield out
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"The archive does not decompress (zstd: {exc}).") from None
    walker.close()


def frame_span(frames: list, tar_start: int, tar_end: int | None, compressed_size: int | None = None
               ) -> tuple[int, int, int | None, int | None]:
    """The frames that hold the tar bytes [tar_start, tar_end): (tar offset of the first,
    compressed offset of the first, tar offset after the last, compressed offset after the
    last); the last two are None when the span reaches the end of the archive."""
    import bisect

    tars = [f[0] for f in frames]
    first = max(0, bisect.bisect_right(tars, tar_start) - 1)
    if tar_end is None:
        return frames[first][0], frames[first][1], None, None
    last = max(first, bisect.bisect_left(tars, tar_end) - 1)
    if last + 1 < len(frames):
        return frames[first][0], frames[first][1], frames[last + 1][0], frames[last + 1][1]
    return frames[first][0], frames[first][1], None, compressed_size
