"""The archive pipeline's pure logic: tar walking, compression, verification."""

import io
import os
import random
import tarfile

import pytest
from hypothesis import given, settings as hsettings, strategies as st

import tarstream as archive


def make_tar(fmt=tarfile.PAX_FORMAT, *, long_names=False, big_member=0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        d = tarfile.TarInfo("data/")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for i in range(5):
            data = os.urandom(i * 700)
            name = f"data/{'x' * 150 if long_names else 'f'}{i}.bin"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uid, info.gid, info.mode = 1000 + i, 2000, 0o640
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "f1.bin"
        tf.addfile(link)
        hard = tarfile.TarInfo("data/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "data/f1.bin"
        tf.addfile(hard)
        fifo = tarfile.TarInfo("data/fifo")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
        if big_member:
            info = tarfile.TarInfo("data/big")
            info.size = big_member
            tf.addfile(info, io.BytesIO(bytes(big_member)))
    return buf.getvalue()


def walk(data: bytes, chunk: int = 1 << 20) -> archive.TarStats:
    walker = archive.TarWalker()
    for i in range(0, len(data), chunk):
        walker.feed(data[i : i + chunk])
    return walker.close()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_walker_counts_what_tarfile_reads(fmt):
    data = make_tar(fmt, long_names=fmt != tarfile.USTAR_FORMAT)

    stats = walk(data, chunk=777)

    members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    assert stats.entries == len(members) == 9
    assert (stats.files, stats.dirs, stats.symlinks, stats.hardlinks, stats.others) == (5, 1, 1, 1, 1)
    assert stats.data_bytes == sum(m.size for m in members if m.isreg())
    assert stats.file_count == 8
    assert stats.tar_bytes == len(data)


def test_walker_uses_the_pax_size_of_members_over_8_gib():
    # A pax "size" record overrides the header's size field (Go writes these for > 8 GiB).
    header = tarfile.TarInfo("data/huge")
    header.size = 0
    record = b"size=1536\n"
    pax = f"{len(record) + 3} ".encode() + record
    assert len(pax) == int(pax.split(b" ")[0])
    pax_info = tarfile.TarInfo("././@PaxHeader")
    pax_info.type, pax_info.size = tarfile.XHDTYPE, len(pax)
    body = pax_info.tobuf(tarfile.USTAR_FORMAT) + pax + bytes(-len(pax) % 512)
    body += header.tobuf(tarfile.USTAR_FORMAT) + os.urandom(1536) + bytes(1024)

    stats = walk(body, chunk=100)

    assert stats.files == 1 and stats.data_bytes == 1536


@given(st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=40))
@hsettings(max_examples=60, deadline=None)
def test_walker_result_does_not_depend_on_how_the_stream_is_cut(cuts):
    data = make_tar(long_names=True)
    walker = archive.TarWalker()
    pos = 0
    for size in cuts:
        walker.feed(data[pos : pos + size])
        pos += size
    walker.feed(data[pos:])
    stats = walker.close()
    assert stats.entries == 9 and stats.tar_bytes == len(data)


def go_like(data: bytes) -> bytes:
    """Like the engine's (Go's) tar: the end marker, without padding to a 10 KiB record."""
    end = -(-len(data.rstrip(b"\0")) // 512) * 512
    return data[:end] + bytes(1024)


@pytest.mark.parametrize("cut", [100, 512, 1000, -1024, -600, -1])
def test_walker_refuses_a_truncated_stream(cut):
    data = go_like(make_tar())
    assert walk(data).entries == 9

    with pytest.raises(archive.ArchiveError, match="truncated"):
        walk(data[:cut])


def test_walker_refuses_a_damaged_header():
    data = bytearray(make_tar(tarfile.USTAR_FORMAT))
    data[512 + 20] ^= 0x01  # the second header's name

    with pytest.raises(archive.ArchiveError, match="checksum"):
        walk(bytes(data))


def test_walker_refuses_garbage_after_the_end_marker():
    data = make_tar()

    with pytest.raises(archive.ArchiveError, match="after its end"):
        walk(data + b"surprise")


def test_walker_accepts_zero_padding_after_the_end_marker():
    assert walk(make_tar() + bytes(10240)).entries == 9


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_pack_keeps_the_tar_bytes_unchanged_and_verify_accepts_them(compression):
    data = make_tar(long_names=True)
    out = io.BytesIO()

    packed = archive.pack([data[i : i + 1000] for i in range(0, len(data), 1000)], out, compression=compression)

    stored = out.getvalue()
    assert b"".join(archive.iter_decompressed(io.BytesIO(stored), compression)) == data
    assert packed.compressed_bytes == len(stored) and packed.stats.entries == 9
    result = archive.verify_stream([stored[:5000], stored[5000:]], compression=compression, sha256=packed.sha256)
    assert result.ok, result.problems
    assert archive.detect_compression(stored) == compression


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_verify_reports_a_flipped_byte(compression):
    out = io.BytesIO()
    packed = archive.pack([make_tar(big_member=200_000)], out, compression=compression)
    stored = bytearray(out.getvalue())
    stored[len(stored) // 2] ^= 0x40

    result = archive.verify_stream([bytes(stored)], compression=compression, sha256=packed.sha256)

    assert not result.ok
    assert "SHA-256" in result.message


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_verify_reports_a_truncated_archive_even_without_a_checksum(compression):
    out = io.BytesIO()
    archive.pack([make_tar(big_member=100_000)], out, compression=compression)
    stored = out.getvalue()

    result = archive.verify_stream([stored[: len(stored) - 40]], compression=compression, sha256=None)

    assert not result.ok
    assert "truncated" in result.message or "does not decompress" in result.message


def test_pack_refuses_a_stream_that_breaks_off():
    data = make_tar(big_member=50_000)

    with pytest.raises(archive.ArchiveError, match="truncated"):
        archive.pack([data[: len(data) // 2]], io.BytesIO(), compression="zstd")


def test_concatenated_gzip_members_decompress_as_one_stream():
    import gzip

    data = make_tar()
    stored = gzip.compress(data[:3000]) + gzip.compress(data[3000:])

    assert archive.verify_stream([stored[i : i + 333] for i in range(0, len(stored), 333)], compression="gzip").ok


def test_unknown_compression_is_refused():
    with pytest.raises(archive.ArchiveError):
        archive.compressor("lz4")


def test_walker_is_cheap_on_random_chunking_of_a_big_member():
    # 8 MiB of one member fed in odd chunks: the walker skips data by arithmetic.
    data = make_tar(big_member=8 << 20)
    rng = random.Random(1)
    walker = archive.TarWalker()
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 1 << 20)
        walker.feed(data[pos : pos + n])
        pos += n
    assert walker.close().data_bytes == sum(i * 700 for i in range(5)) + (8 << 20)


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_decompression_is_bounded_whatever_the_ratio(compression):
    out = io.BytesIO()
    comp = archive.compressor(compression)
    out.write(comp.feed(bytes(64 << 20)) + comp.finish())  # 64 MiB of zeros: a few KiB stored
    out.seek(0)

    sizes = [len(c) for c in archive.iter_decompressed(out, compression, chunk_size=1 << 20)]

    assert sum(sizes) == 64 << 20 and max(sizes) <= 1 << 20


def test_a_gzip_stream_cut_short_is_reported():
    comp = archive.compressor("gzip")
    data = comp.feed(os.urandom(100_000)) + comp.finish()

    with pytest.raises(archive.ArchiveError, match="truncated"):
        list(archive.iter_decompressed(io.BytesIO(data[:-10]), "gzip"))


def test_parallel_gzip_writes_members_that_gunzip_reads_as_one_stream():
    import gzip

    data = (os.urandom(1 << 20) + b"compressible text " * 100_000) * 5  # > two 4 MiB blocks
    comp = archive.compressor("gzip", threads=2)

    stored = b"".join(comp.feed(data[i : i + 300_000]) for i in range(0, len(data), 300_000)) + comp.finish()

    assert stored.count(b"\x1f\x8b\x08") >= 3  # several members
    assert gzip.decompress(stored) == data
    assert b"".join(archive.iter_decompressed(io.BytesIO(stored), "gzip")) == data
