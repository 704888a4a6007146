"""The untrusted-archive checker: each refusal rule, layouts, rewriting, formats (pure, no engine)."""

import gzip
import io
import tarfile

import pytest
import zstandard

from tarstream import ArchiveError, HashingReader, Layout, TarScanner, UnsafeArchive, detect_format, tar_chunks


def make_tar(members, *, fmt=tarfile.PAX_FORMAT) -> bytes:
    """members: (name, kind, extra) with kind file/dir/symlink/hardlink/chr/blk/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, *rest in members:
            extra = rest[0] if rest else {}
            info = tarfile.TarInfo(name)
            info.uid, info.gid = extra.get("uid", 0), extra.get("gid", 0)
            info.mtime = extra.get("mtime", 1_000_000_000)
            info.mode = extra.get("mode", 0o644)
            info.pax_headers = extra.get("pax", {})
            data = b""
            if kind == "file":
                data = extra.get("data", b"x" * 10)
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = extra.get("mode", 0o755)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, extra["target"]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, extra["target"]
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
            elif kind == "blk":
                info.type = tarfile.BLKTYPE
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def scan(data: bytes, *, chunk: int = 4096, **kwargs):
    scanner = TarScanner(**kwargs)
    out = []
    for i in range(0, len(data), chunk):
        out.extend(scanner.feed(data[i : i + chunk]))
    result = scanner.close()
    return result, b"".join(bytes(p) for p in out)


ENGINE_LIKE = [
    ("data", "dir"),
    ("data/dir", "dir", {"mode": 0o2750, "uid": 1000}),
    ("data/dir/hello.txt", "file", {"uid": 1234, "gid": 4321, "mode": 0o4755}),
    ("data/dir/link", "symlink", {"target": "hello.txt"}),
    ("data/dir/abs-link", "symlink", {"target": "/etc/passwd"}),
    ("data/dir/up-link", "symlink", {"target": "../../.."}),
    ("data/dir/hard", "hardlink", {"target": "data/dir/hello.txt"}),
    ("data/fifo", "fifo"),
    ("data/empty", "dir"),
]


@pytest.mark.parametrize("chunk", [1, 7, 512, 1 << 20])
def test_an_engine_archive_passes_whatever_the_chunk_size(chunk):
    result, out = scan(make_tar(ENGINE_LIKE), chunk=chunk)
    assert result.layout is Layout.DATA
    assert (result.stats.entries, result.stats.dirs, result.stats.symlinks, result.stats.hardlinks) == (9, 3, 3, 1)
    assert out == b""  # nothing to rewrite: the caller forwards its own bytes


def test_the_recipe_layout_with_dot_data_is_the_data_layout():
    result, _ = scan(make_tar([("./data/", "dir"), ("./data/a", "file"), ("./data/h", "hardlink", {"target": "./data/a"})]))
    assert result.layout is Layout.DATA


def test_a_dot_archive_is_the_dot_layout_even_with_a_data_folder_inside():
    result, _ = scan(make_tar([("./", "dir"), ("./data/", "dir"), ("./data/x", "file")]))
    assert result.layout is Layout.DOT


def test_a_file_named_data_is_fine_in_a_dot_archive_but_not_as_the_data_root():
    assert scan(make_tar([("./", "dir"), ("./data", "file")]))[0].layout is Layout.DOT
    with pytest.raises(UnsafeArchive, match="would replace the volume's root with a symlink"):
        scan(make_tar([("data", "symlink", {"target": "/"}), ("data/x", "file")]))
    with pytest.raises(UnsafeArchive, match="'.' would replace the volume's root"):
        scan(make_tar([(".", "file")]))


@pytest.mark.parametrize("name", ["/data/etc/passwd", "/etc/passwd"])
def test_absolute_paths_are_refused_naming_the_member(name):
    with pytest.raises(UnsafeArchive, match=f"'{name}' is an absolute path"):
        scan(make_tar([("data", "dir"), (name, "file")]))


@pytest.mark.parametrize("name", ["data/../etc/cron.d/x", "data/a/../../x", "./../x"])
def test_dot_dot_components_are_refused(name):
    with pytest.raises(UnsafeArchive, match=r"contains a '\.\.' component"):
        scan(make_tar([("data", "dir"), (name, "file")]))


def test_a_member_through_a_symlink_of_the_archive_is_refused():
    members = [("data", "dir"), ("data/l", "symlink", {"target": "/etc"}), ("data/l/passwd", "file")]
    with pytest.raises(UnsafeArchive, match="'data/l/passwd' passes through the symlink 'data/l'"):
        scan(make_tar(members))


def test_a_symlink_replaced_by_a_directory_may_then_hold_files():
    members = [("data", "dir"), ("data/l", "symlink", {"target": "/etc"}), ("data/l", "dir"), ("data/l/x", "file")]
    assert scan(make_tar(members))[0].layout is Layout.DATA


def test_a_hardlink_to_a_symlink_is_a_symlink_too():
    members = [("data", "dir"), ("data/l", "symlink", {"target": "/etc"}),
               ("data/h", "hardlink", {"target": "data/l"}), ("data/h/passwd", "file")]
    with pytest.raises(UnsafeArchive, match="passes through the symlink 'data/h'"):
        scan(make_tar(members))


@pytest.mark.parametrize("target,message", [
    ("/etc/shadow", "points outside the volume"),
    ("data/../../etc/shadow", "points outside the volume"),
    ("bin/busybox", "not an earlier file of the archive"),
    ("data/later", "not an earlier file of the archive"),
    ("data", "not an earlier file of the archive"),
    ("data/l/x", "points through the symlink 'data/l'"),
])
def test_hardlinks_pointing_outside_are_refused(target, message):
    members = [("data", "dir"), ("data/l", "symlink", {"target": "/"}), ("data/h", "hardlink", {"target": target}),
               ("data/later", "file")]
    with pytest.raises(UnsafeArchive, match=message) as info:
        scan(make_tar(members))
    assert "'data/h'" in str(info.value)


@pytest.mark.parametrize("kind,label", [("chr", "character device"), ("blk", "block device")])
def test_device_nodes_are_refused_unless_allowed(kind, label):
    data = make_tar([("data", "dir"), ("data/dev/null", kind)])
    with pytest.raises(UnsafeArchive, match=f"'data/dev/null' is a {label}"):
        scan(data)
    assert scan(data, allow_devices=True)[0].stats.others == 1


@pytest.mark.parametrize("members", [
    [("etc/passwd", "file")],
    [("data", "dir"), ("etc/passwd", "file")],
    [("./", "dir"), ("data/x", "file"), ("etc", "dir")],
    [("data", "dir"), ("./x", "file"), ("y", "file")],
])
def test_members_without_a_common_known_root_are_refused(members):
    with pytest.raises(UnsafeArchive, match="do not share one root"):
        scan(make_tar(members))


def test_the_pax_path_is_the_name_that_counts():
    members = [("data", "dir"), ("data/innocent", "file", {"pax": {"path": "data/../../etc/x"}})]
    with pytest.raises(UnsafeArchive, match=r"'data/\.\./\.\./etc/x' contains a '\.\.' component"):
        scan(make_tar(members))


def test_gnu_long_names_are_read():
    long_name = "data/" + "d" * 120 + "/../../../x"
    with pytest.raises(UnsafeArchive, match=r"contains a '\.\.' component"):
        scan(make_tar([("data", "dir"), (long_name, "file")], fmt=tarfile.GNU_FORMAT))
    fine = "data/" + "e" * 200
    assert scan(make_tar([("data", "dir"), (fine, "file")], fmt=tarfile.GNU_FORMAT))[0].stats.files == 1


def test_a_pax_path_and_a_gnu_long_name_on_one_member_are_refused():
    # Tar programs disagree on which wins: refuse rather than guess.
    gnu = make_tar([("data", "dir"), ("data/" + "n" * 150, "file")], fmt=tarfile.GNU_FORMAT)
    blocks = [gnu[i : i + 512] for i in range(0, len(gnu), 512)]
    pax = make_tar([("data/other", "file", {"pax": {"path": "data/p"}})])
    pax_header = pax[:1024]  # the x header and its one block of records
    crafted = blocks[0] + pax_header + b"".join(blocks[1:])
    with pytest.raises(UnsafeArchive, match="two different names"):
        scan(crafted)


def test_the_ustar_prefix_is_part_of_the_name():
    name = "data/" + "p" * 120 + "/../x"  # ustar puts the directory part in the prefix field
    with pytest.raises(UnsafeArchive, match=r"'\.\.' component"):
        scan(make_tar([("data", "dir"), (name, "file")], fmt=tarfile.USTAR_FORMAT))


def test_truncated_and_damaged_archives_are_archive_errors():
    data = make_tar(ENGINE_LIKE)
    with pytest.raises(ArchiveError, match="truncated"):
        scan(data[:1536 + 100])
    with pytest.raises(ArchiveError, match="no end-of-archive marker"):
        scan(data[: data.rindex(b"x" * 10) + 512])
    damaged = bytearray(data)
    damaged[520] ^= 0xFF  # inside the second member's header
    with pytest.raises(ArchiveError, match="checksum"):
        scan(bytes(damaged))
    with pytest.raises(ArchiveError, match="empty"):
        scan(bytes(1024))


def test_data_hidden_in_a_header_only_member_is_refused():
    data = bytearray(make_tar([("data", "dir"), ("data/d", "dir")]))
    # Claim 512 bytes of data on the directory: readers disagree whether to skip it.
    header = bytearray(data[512:1024])
    header[124:136] = b"%011o\0" % 512
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    data[512:1024] = header
    with pytest.raises(UnsafeArchive, match="claims 512 bytes"):
        scan(bytes(data))


def test_data_after_the_end_marker_is_refused():
    with pytest.raises(ArchiveError, match="after its end-of-archive marker"):
        scan(make_tar(ENGINE_LIKE) + b"smuggled")


def test_the_second_pass_refuses_a_layout_other_than_the_checked_one():
    with pytest.raises(UnsafeArchive, match="not under data/"):
        scan(make_tar([("./", "dir"), ("./x", "file")]), expect=Layout.DATA)


def test_dot_archives_are_rewritten_to_data_keeping_everything_else():
    long = "./" + "l" * 150
    pax = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
    members = [
        ("./", "dir", {"mode": 0o1777, "uid": 5, "mtime": 1_200_000_000}),
        ("./f", "file", {"uid": 1234, "gid": 4321, "mode": 0o4755, "data": b"hello" * 300, "pax": pax}),
        ("./sym", "symlink", {"target": "../f", "uid": 77}),
        ("./hard", "hardlink", {"target": "./f"}),
        (long, "file", {"data": b"long"}),
        ("./" + "h" * 120, "hardlink", {"target": long}),
    ]
    source = make_tar(members)
    first, _ = scan(source)
    assert first.layout is Layout.DOT
    result, out = scan(source, chunk=333, expect=Layout.DOT, rewrite=True)
    assert result.stats.entries == 6
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        got = {m.name: m for m in tf.getmembers()}
        assert sorted(got) == sorted(["data", "data/f", "data/sym", "data/hard", "data/" + "l" * 150,
                                      "data/" + "h" * 120])
        root, f = got["data"], got["data/f"]
        assert (root.mode, root.uid, root.mtime, root.isdir()) == (0o1777, 5, 1_200_000_000, True)
        assert (f.uid, f.gid, f.mode) == (1234, 4321, 0o4755)
        assert f.pax_headers["SCHILY.xattr.security.capability"] == pax["SCHILY.xattr.security.capability"]
        assert tf.extractfile(f).read() == b"hello" * 300
        assert got["data/sym"].linkname == "../f" and got["data/sym"].uid == 77
        assert got["data/hard"].linkname == "data/f"
        assert got["data/" + "h" * 120].linkname == "data/" + "l" * 150
        assert tf.extractfile(got["data/" + "l" * 150]).read() == b"long"
    # What we produce passes our own checks as a data/ archive.
    assert scan(out)[0].layout is Layout.DATA


def test_formats_are_detected_from_content():
    tar = make_tar(ENGINE_LIKE)
    assert detect_format(tar[:4096]) == "tar"
    assert detect_format(gzip.compress(tar)[:4096]) == "gzip"
    assert detect_format(zstandard.ZstdCompressor().compress(tar)[:4096]) == "zstd"
    for head, name in [(b"BZh91AY&SY" + bytes(600), "bzip2"), (b"\xfd7zXZ\x00" + bytes(600), "xz"),
                       (b"PK\x03\x04" + bytes(600), "zip")]:
        with pytest.raises(ArchiveError, match=f"This is a {name} file"):
            detect_format(head)
    with pytest.raises(ArchiveError, match="not a tar archive"):
        detect_format(b"hello, world\n" * 100)


def test_decompression_is_bounded_and_hashes_the_stored_bytes():
    import hashlib

    bomb = zstandard.ZstdCompressor().compress(bytes(300 << 20))  # 300 MiB of zeros in a few KiB
    reader = HashingReader(io.BytesIO(bomb))
    sizes = [len(c) for c in tar_chunks(reader, "zstd", size=1 << 20)]
    reader.drain()
    assert max(sizes) <= 1 << 20 and sum(sizes) == 300 << 20
    assert reader.hexdigest() == hashlib.sha256(bomb).hexdigest() and reader.bytes_read == len(bomb)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_corrupt_compressed_data_is_an_archive_error(compression):
    tar = make_tar(ENGINE_LIKE)
    packed = gzip.compress(tar) if compression == "gzip" else zstandard.ZstdCompressor().compress(tar)
    damaged = packed[:40] + bytes(b ^ 0x5A for b in packed[40:80]) + packed[80:]
    with pytest.raises(ArchiveError):
        scanner = TarScanner()
        for chunk in tar_chunks(io.BytesIO(damaged), compression):
            scanner.feed(chunk)
        scanner.close()
