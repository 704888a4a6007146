#!/usr/bin/env python
"""The worker's memory does not grow with the volume: the same backup of a small and of
a big generated volume (sparse-free), side by side, peak RSS of the worker process each.

    .venv/bin/python bench/memory.py [--small 1GiB] [--big 20GiB] [--paths helper,engine]

Each volume holds files of 256 MiB: 1/5 of their bytes random (incompressible), the rest
generated text (compressible), written through the volume's mountpoint. Each backup runs
in a fresh child process (bench/backup.py's child) whose peak RSS (VmHWM) is read; the
archive is removed after each run so a 20 GiB run needs ~25 GiB of free disk at most.
Needs root on the engine's host, as bench/backup.py does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backup import bench_cleanup, bench_start, cargohold_backup, human, parse_size  # noqa: E402

FILE = 256 << 20


def fill(mountpoint: str, size: int) -> int:
    """Files of 256 MiB up to `size`: random fifth, text for the rest (no holes)."""
    written = 0
    index = 0
    while written < size:
        n = min(FILE, size - written)
        random_part = n // 5
        line = f"cargohold memory bench file {index} abcdefghijklmnopqrstuvwxyz 0123456789\n".encode()
        text = line * ((1 << 20) // len(line) + 1)
        with open(Path(mountpoint) / f"part-{index:04d}.bin", "wb") as f:
            left = random_part
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                f.write(chunk)
                left -= len(chunk)
            left = n - random_part
            while left:
                chunk = text[: min(left, 1 << 20)]
                f.write(chunk)
                left -= len(chunk)
        written += n
        index += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--big", type=parse_size, default=parse_size("20GiB"))
    parser.add_argument("--paths", default="helper,engine", help="data paths to run (helper, engine)")
    args = parser.parse_args()
    work = bench_start("cargohold-bench-mem-")
    from backups.models import Backup
    from backups.storage import get_storage
    from volumes import engine
    from volumes.services import mirror_sync

    rows = []
    for label, size in (("small", args.small), ("big", args.big)):
        volume = f"chbench-mem-{uuid.uuid4().hex[:8]}"
        engine.create_volume(name=volume, driver="local", options={}, labels={"cargohold.bench": "1"})
        try:
            mountpoint = engine.inspect_volume(volume).mountpoint
            started = time.monotonic()
            written = fill(mountpoint, size)
            print(f"{label}: {human(written)} generated in {time.monotonic() - started:.0f} s", flush=True)
            mirror_sync()
            for path in [p for p in args.paths.split(",") if p]:
                report = cargohold_backup(volume, "zstd", data_path=path)
                rows.append((label, written, path, report))
                print(f"  {path}: {report['seconds']:.1f} s, peak RSS {report['maxrss_kib'] / 1024:.0f} MiB, "
                      f"archive {human(report['size'])}", flush=True)
                for backup in Backup.objects.filter(volume_name=volume):
                    get_storage().delete(backup.key)
                    get_storage().delete(backup.key + ".manifest.json")
        finally:
            engine.remove_volume(volume)

    bench_cleanup([], work, keep=False)  # the volumes went one by one above
    print("\n| volume | data path | time | worker peak RSS | RSS vs small |")
    print("|---|---|---|---|---|")
    base = {path: rep["maxrss_kib"] for label, _, path, rep in rows if label == "small"}
    for label, written, path, rep in rows:
        ratio = rep["maxrss_kib"] / base[path] if base.get(path) else float("nan")
        print(f"| {human(written)} | {path} | {rep['seconds']:.1f} s | {rep['maxrss_kib'] / 1024:.0f} MiB | "
              f"{ratio:.2f}x |")


if __name__ == "__main__":
    main()
