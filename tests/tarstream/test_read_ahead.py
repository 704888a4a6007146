"""The read-ahead hashing reader (tarstream.hashing.ReadAheadHashingReader): the same bytes,
digest, counts and sink calls as HashingReader, its thread stopped on close, a read error
turned into ArchiveError. Pure: in-memory sources."""

import hashlib
import io
import os

import pytest
import zstandard

from tarstream import ArchiveError, HashingReader, iter_decompressed
from tarstream.hashing import ReadAheadHashingReader


class Sink:
    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(bytes(data))


def test_it_hands_out_the_same_bytes_digest_and_sink_calls_as_the_plain_reader():
    data = os.urandom(3 << 20) + b"x" * 12345
    plain_sink, ahead_sink, told = Sink(), Sink(), []
    plain = HashingReader(io.BytesIO(data), sink=plain_sink)
    with ReadAheadHashingReader(io.BytesIO(data), sink=ahead_sink, on_read=told.append, chunk_size=1 << 20) as ahead:
        got = b"".join(iter(lambda: ahead.read(300_000), b""))
        while plain.read(300_000):
            pass
        assert got == data
        assert ahead.hexdigest() == plain.hexdigest() == hashlib.sha256(data).hexdigest()
        assert ahead.bytes_read == len(data) == sum(told)
        assert b"".join(ahead_sink.chunks) == b"".join(plain_sink.chunks) == data


def test_a_decompressor_reads_through_it_and_drain_hashes_what_it_left():
    tar = os.urandom(1 << 20) + b"\0" * (2 << 20)
    packed = zstandard.ZstdCompressor().compress(tar)
    with ReadAheadHashingReader(io.BytesIO(packed), chunk_size=1 << 16) as reader:
        assert b"".join(iter_decompressed(reader, "zstd")) == tar
        reader.drain()
        assert reader.hexdigest() == hashlib.sha256(packed).hexdigest() and reader.bytes_read == len(packed)


def test_the_digest_is_refused_before_the_end():
    with ReadAheadHashingReader(io.BytesIO(b"a" * (4 << 20)), chunk_size=1 << 20) as reader:
        reader.read(10)
        with pytest.raises(RuntimeError):
            reader.hexdigest()


def test_close_mid_stream_stops_the_thread_without_reading_everything():
    class Endless:
        reads = 0

        def read(self, n):
            self.reads += 1
            return b"z" * n

    source = Endless()
    reader = ReadAheadHashingReader(source, depth=2, chunk_size=1 << 16)
    reader.read(10)
    reader.close()
    assert not reader._thread.is_alive()
    reads = source.reads
    assert reads < 10 and source.reads == reads


def test_a_read_error_is_an_archive_error_in_the_consumer():
    class Broken:
        def __init__(self):
            self.n = 0

        def read(self, n):
            self.n += 1
            if self.n > 2:
                raise OSError(5, "Input/output error")
            return b"y" * n

    with ReadAheadHashingReader(Broken(), chunk_size=1024) as reader, \
            pytest.raises(ArchiveError, match="Input/output error"):
        while reader.read(1024):
            pass
