"""What a volume holds that a backup and a restore must keep, made and read on the engine's
host (the tests run as root there, beside the volumes' _data folders): shared by the
backup and restore fidelity tests, which run every data path against it."""

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

from tests import dockercli

MTIME_NS = 1_600_000_000_123_456_789


def mountpoint(volume: str) -> Path:
    return Path(json.loads(dockercli.docker("volume", "inspect", volume))[0]["Mountpoint"])


def fill_awkward(root: Path, *, sparse_size: int = 8 << 20) -> None:
    """What any backup must keep, on either data path: owners, modes, links, setuid, a
    capability, a non-UTF-8 name, a FIFO, an empty folder, a sparse file's content."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "text.txt").write_bytes(b"hello\n" * 1000)
    (root / "dir" / "sub" / "random.bin").write_bytes(os.urandom(200_000))
    os.chown(root / "dir" / "sub", 1234, 4321)
    os.chown(root / "dir" / "sub" / "random.bin", 1234, 4321)
    os.chmod(root / "dir" / "sub" / "random.bin", 0o600)
    os.chmod(root / "dir", 0o751)
    os.symlink("text.txt", root / "dir" / "relative-link")
    os.symlink("/nowhere/at/all", root / "dir" / "dangling-link")
    os.link(root / "dir" / "text.txt", root / "dir" / "hardlink.txt")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(sparse_size)
        f.seek(sparse_size // 2)
        f.write(b"in the middle")
    (root / "capable").write_bytes(b"#!/bin/sh\n")
    os.chown(root / "capable", 0, 0)  # before the capability: chown drops capabilities
    os.chmod(root / "capable", 0o4755)  # setuid too
    os.setxattr(root / "capable", "security.capability", bytes.fromhex("0100000200040000000000000000000000000000"))
    with open(os.path.join(os.fsencode(root), b"caf\xe9-\xff.txt"), "wb") as f:
        f.write(b"latin-1 name\n")
    (root / "empty-dir").mkdir()
    os.mkfifo(root / "fifo")
    os.utime(root / "dir" / "text.txt", (1_600_000_000, 1_600_000_000))


def fill_rich(root: Path) -> None:
    """fill_awkward, plus what dockerd's tar loses: user.* xattrs, POSIX ACLs (access and
    default), nanosecond mtimes, and a sparse file large enough to tell its holes."""
    fill_awkward(root, sparse_size=64 << 20)
    os.setxattr(root / "dir" / "text.txt", "user.origin", b"made by the fidelity test")
    os.setxattr(root / "empty-dir", "user.empty", b"")
    subprocess.run(["setfacl", "-m", "u:2001:rw-,g:3001:r--", str(root / "dir" / "sub" / "random.bin")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:2001:rwx", str(root / "empty-dir")], check=True)
    os.utime(root / "dir" / "text.txt", ns=(MTIME_NS, MTIME_NS))
    os.utime(root / "sparse.img", ns=(MTIME_NS, MTIME_NS + 1))


def _acl(path: str) -> str:
    out = subprocess.run(["getfacl", "-cpn", "--", path], capture_output=True, check=True).stdout
    return out.decode("utf-8", "replace")


def snapshot(root: Path, *, extended: bool = True, capabilities: bool = True) -> dict:
    """Everything that must survive, per path (bytes: names need not be UTF-8).
    `extended`: also xattrs, ACLs, nanosecond mtimes and the sparse file's allocation;
    `capabilities`: the files' security.capability."""
    out = {}
    base = os.fsencode(root)
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, base)
            st = os.lstat(path)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
            else:
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        entry["sha"] = hashlib.sha256(f.read()).hexdigest()
                    entry["links"] = st.st_nlink
                    entry["mtime"] = int(st.st_mtime)
                    if capabilities:
                        try:
                            entry["cap"] = os.getxattr(path, "security.capability").hex()
                        except OSError:
                            entry["cap"] = None
                if extended:
                    entry.update(extended_facts(path, st))
            out[rel] = entry
    return out


def extended_facts(path: bytes, st: os.stat_result) -> dict:
    facts = {"xattrs": {k: os.getxattr(path, k) for k in sorted(os.listxattr(path)) if k.startswith("user.")},
             "acl": _acl(os.fsdecode(path))}
    if stat.S_ISREG(st.st_mode):
        facts["mtime_ns"] = st.st_mtime_ns
        facts["sparse"] = st.st_blocks * 512 < st.st_size // 2
    return facts
