"""One walker for every tar stream: the scanner is the walker with the safety rules on
top, so trusted and untrusted streams are read, and refused when damaged, alike; and the
trusted walk keeps nothing per member (a backup of millions of files holds no names)."""

import io
import tarfile
import tracemalloc

import pytest

from tarstream import ArchiveError, TarScanner, TarWalker
from tarstream.headers import PAX, encode_pax, meta_block


def member(name: str, data: bytes = b"", kind=tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def pax(**records) -> bytes:
    return meta_block(None, PAX, encode_pax({k.encode(): v for k, v in records.items()}))


ROOT = member("data/", kind=tarfile.DIRTYPE)
END = bytes(1024)


def refusal(cls, data: bytes, chunk: int = 700) -> str:
    walker = cls()
    with pytest.raises(ArchiveError) as caught:
        for i in range(0, len(data), chunk):
            walker.feed(data[i : i + chunk])
        walker.close()
    return str(caught.value)


def test_the_scanner_is_the_walker_with_rules():
    assert issubclass(TarScanner, TarWalker)
    assert TarScanner.feed is not TarWalker.feed  # it adds limits and rewriting, not a second loop
    assert "_header" not in vars(TarScanner) and "_finish_meta" not in vars(TarScanner)


DAMAGED = {
    "an extended header, then the end marker": ROOT + pax(mtime=b"1") + END,
    "an extended header, then nothing": ROOT + pax(mtime=b"1"),
    "cut inside a member's data": ROOT + member("data/f", b"x" * 3000)[:1500],
    "a damaged checksum": ROOT + member("data/f", b"x")[:20] + b"Y" + member("data/f", b"x")[21:] + END,
    "more than 4 MiB of extended headers": ROOT + pax(comment=b"c" * 900_000) * 5 + member("data/f") + END,
    "garbage after the end marker": ROOT + END + b"garbage",
}


@pytest.mark.parametrize("what", DAMAGED)
def test_trusted_and_untrusted_streams_are_refused_with_the_same_words(what):
    data = DAMAGED[what]

    assert refusal(TarWalker, data) == refusal(TarScanner, data)


def test_the_trusted_walk_keeps_nothing_per_member():
    names = 20_000
    stream = io.BytesIO()
    stream.write(ROOT)
    for i in range(names):
        stream.write(pax(path=f"data/{'n' * 120}-{i}".encode()) + member(f"data/f{i}", b"x"))
    stream.write(END)
    data = stream.getvalue()
    walker = TarWalker()

    tracemalloc.start()
    try:
        for i in range(0, len(data), 1 << 20):
            walker.feed(memoryview(data)[i : i + (1 << 20)])
        stats = walker.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stats.entries == names + 1
    # 20,000 names of 130 bytes would be 2.6 MB; a few chunks' bookkeeping is all it holds.
    assert peak < 256 << 10, peak
