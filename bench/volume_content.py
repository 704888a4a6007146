"""Fill a Docker volume with mixed content for benchmarks (run as root on the engine's host).

Writes straight into the volume's mountpoint (local driver): far faster than a helper
container running shell loops, and it can set owners, capabilities and odd names.

Mix, as shares of the requested size: ~35 % compressible text (log-like lines), ~30 %
random (incompressible), ~20 % binaries copied from the host (partly compressible),
~20,000 small files spread over 200 folders, plus symlinks, hardlinks, a sparse file,
a file with a capability, a name that is not UTF-8, a FIFO and several owners.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

MiB = 1 << 20
OWNERS = [(0, 0), (1000, 1000), (33, 33), (999, 998), (65534, 65534)]


def _text_blocks(rng: random.Random, count: int, size: int) -> list[bytes]:
    words = (
        "GET POST PUT DELETE /api/v1/orders /api/v1/users /static/app.js /health 200 201 204 301 404 500 "
        "INFO WARN ERROR DEBUG user_id session request_id latency_ms upstream cache hit miss worker queue"
    ).split()
    blocks = []
    for _ in range(count):
        lines = []
        total = 0
        while total < size:
            line = (
                f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                f"{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z {rng.choice(words)} "
                f"{' '.join(rng.choice(words) for _ in range(rng.randint(3, 9)))} id={rng.getrandbits(48):x} "
                f"ms={rng.randint(1, 5000)}\n"
            )
            lines.append(line)
            total += len(line)
        blocks.append("".join(lines).encode()[:size])
    return blocks


def _host_binaries() -> list[bytes]:
    found = []
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib"):
        for path in sorted(Path(folder).glob("*")):
            try:
                if path.is_file() and not path.is_symlink() and 256 * 1024 < path.stat().st_size < 16 * MiB:
                    found.append(path.read_bytes())
            except OSError:
                continue
            if len(found) >= 40:
                return found
    return found or [os.urandom(MiB) + bytes(MiB)]


def fill(root: str | Path, *, size: int, small_files: int = 20_000, seed: int = 42) -> dict:
    """Fill `root` (a volume's _data folder) with about `size` bytes; returns a summary."""
    rng = random.Random(seed)
    root = Path(root)
    written = 0

    def own(path: Path, i: int) -> None:
        uid, gid = OWNERS[i % len(OWNERS)]
        os.lchown(path, uid, gid)

    # Small files first: their share is fixed by count (~4 KiB on average).
    small_root = root / "small"
    text_pool = _text_blocks(rng, 4, 64 * 1024)
    for i in range(small_files):
        folder = small_root / f"d{i % 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        n = rng.randint(64, 8192)
        path = folder / f"f{i:05d}.{'txt' if i % 3 else 'bin'}"
        data = os.urandom(n) if i % 3 == 0 else text_pool[i % 4][rng.randint(0, 50000):][:n]
        path.write_bytes(data)
        os.chmod(path, (0o644, 0o600, 0o755, 0o640)[i % 4])
        own(path, i)
        written += len(data)
    for i, folder in enumerate(sorted(small_root.iterdir())):
        own(folder, i)

    remaining = max(0, size - written)
    text_share, random_share = int(remaining * 0.45), int(remaining * 0.35)
    binary_share = remaining - text_share - random_share

    text_dir = root / "logs"
    text_dir.mkdir(exist_ok=True)
    blocks = _text_blocks(rng, 8, 4 * MiB)
    i = 0
    while text_share > 0:
        path = text_dir / f"app-{i:03d}.log"
        target = min(text_share, rng.choice([8, 16, 32, 64]) * MiB)
        with open(path, "wb") as f:
            done = 0
            while done < target:
                piece = blocks[rng.randrange(len(blocks))][: target - done]
                f.write(piece)
                done += len(piece)
        own(path, i)
        text_share -= target
        written += target
        i += 1

    random_dir = root / "media"
    random_dir.mkdir(exist_ok=True)
    i = 0
    while random_share > 0:
        path = random_dir / f"blob-{i:03d}.bin"
        target = min(random_share, rng.choice([1, 4, 16, 48]) * MiB)
        with open(path, "wb") as f:
            for _ in range(target // MiB):
                f.write(os.urandom(MiB))
            f.write(os.urandom(target % MiB))
        own(path, i)
        random_share -= target
        written += target
        i += 1

    bin_dir = root / "opt" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    binaries = _host_binaries()
    i = 0
    while binary_share > 0:
        data = binaries[i % len(binaries)][:binary_share]
        path = bin_dir / f"tool-{i:04d}"
        path.write_bytes(data)
        os.chmod(path, 0o755)
        own(path, i)
        binary_share -= len(data)
        written += len(data)
        i += 1

    # The awkward cases a backup must keep.
    odd = root / "odd"
    odd.mkdir(exist_ok=True)
    (odd / "target.txt").write_text("the target\n")
    os.symlink("target.txt", odd / "relative-link")
    os.symlink("/etc/passwd", odd / "absolute-link")
    os.symlink("missing", odd / "dangling-link")
    os.link(odd / "target.txt", odd / "hardlink.txt")
    with open(odd / "sparse.img", "wb") as f:
        f.truncate(64 * MiB)
        f.seek(32 * MiB)
        f.write(b"middle of a sparse file")
    (odd / "capable").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(odd / "capable", 0o755)
    (odd / b"caf\xe9-latin1-\xff.txt".decode("utf-8", "surrogateescape")).write_bytes(b"not utf-8 name\n")
    (odd / "empty-dir").mkdir(exist_ok=True)
    os.mkfifo(odd / "fifo")
    for j, path in enumerate(sorted(odd.iterdir())):
        own(path, j)
    os.chown(root, 1000, 1000)
    try:  # cap_net_bind_service=ep, as `setcap` writes it; after the owners: chown drops capabilities
        os.setxattr(odd / "capable", "security.capability",
                    bytes.fromhex("0100000200040000000000000000000000000000"))
    except OSError:
        pass
    return {"bytes": written, "small_files": small_files}
