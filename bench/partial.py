#!/usr/bin/env python
"""One file out of a big archive: read it, or restore it, vs restoring the whole archive.

    .venv/bin/python bench/partial.py [--size 1GiB] [--frame 32MiB] [--runs 2] [--keep]

Builds a volume of mixed content (bench/volume_content.py) plus one 1 MiB file of random
bytes, backs it up with the real backup handler (the data helper's tar | split+zstd,
frames of --frame bytes of tar), then times, side by side:

1. reading that one file out of the archive (backups.partial.read_file_bytes: a ranged
   read of the frames that hold it), and the same with the frames ignored (the fallback
   for archives without frames: a sequential read from the start);
2. restoring just that file into a new volume (a restore job with `paths`);
3. restoring the whole archive into a new volume (the same handler, no paths).

Needs root on the engine's host and the data helper image; uses a throw-away database
and backup folder, and removes its volumes after (unless --keep).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backup import cargohold_backup, human, parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="volume size (default 1GiB)")
    parser.add_argument("--frame", type=parse_size, default=parse_size("32MiB"), help="BACKUP_FRAME_BYTES")
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2, help="repeat each measurement; the best time counts")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from bench.backup import bench_cleanup, bench_start

    os.environ["BACKUP_FRAME_BYTES"] = str(args.frame)
    os.environ["CARGOHOLD_DATA_PATH"] = "helper"
    work = bench_start("cargohold-bench-")
    from bench.volume_content import fill
    from jobs import tasks
    from jobs.runner import job_perform
    from volumes import engine
    from volumes.services import mirror_sync

    tasks.run_job.apply_async = lambda *a, **k: None  # this process runs the jobs
    import jobs.services

    jobs.services.job_enqueue = lambda **kwargs: None
    volume = f"chbench-{uuid.uuid4().hex[:8]}"
    made = [volume]
    try:
        engine.create_volume(name=volume, driver="local", options={}, labels={"cargohold.bench": "1"})
        mountpoint = Path(engine.inspect_volume(volume).mountpoint)
        print(f"building {human(args.size)} of mixed content in volume {volume} ...", flush=True)
        fill(mountpoint, size=args.size, small_files=args.small_files)
        (mountpoint / "zz-target").mkdir(exist_ok=True)
        one = os.urandom(1 << 20)
        (mountpoint / "zz-target" / "one.bin").write_bytes(one)
        mirror_sync()
        report = cargohold_backup(volume, "zstd", data_path="helper")
        from backups import partial
        from backups.models import Backup, BackupEntry
        from restores import services

        backup = Backup.objects.filter(volume_name=volume).latest("created_at")
        frames = backup.manifest["archive"].get("frames") or []
        entry = BackupEntry.objects.get(backup=backup, path="zz-target/one.bin")
        print(f"  backup: {human(report['tar_bytes'])} of tar in {human(report['size'])}, {len(frames)} frames, "
              f"{backup.entries.count()} index entries, {report['seconds']:.2f} s; the file is at tar offset "
              f"{human(entry.offset)}", flush=True)
        results: dict[str, float] = {}

        def best(name: str, fn) -> None:
            for _ in range(args.runs):
                started = time.monotonic()
                fn()
                seconds = time.monotonic() - started
                results[name] = min(results.get(name, seconds), seconds)
            print(f"  {name}: {results[name]:.3f} s", flush=True)

        def read_one():
            digest = hashlib.sha256()
            for chunk in partial.read_file_bytes(backup, "zz-target/one.bin"):
                digest.update(chunk)
            assert digest.digest() == hashlib.sha256(one).digest()

        best("read one 1 MiB file (frames)", read_one)
        framed_manifest = backup.manifest
        backup.manifest = {**framed_manifest, "archive": {k: v for k, v in framed_manifest["archive"].items()
                                                         if k != "frames"}}
        best("read one 1 MiB file (no frames: from the start)", read_one)
        backup.manifest = framed_manifest

        def restore(paths):
            def run():
                name = f"chbench-{uuid.uuid4().hex[:8]}"
                made.append(name)
                r = services.restore_new_start(backup=backup, volume_name=name, paths=paths, trigger="bench")
                job_perform(r.job_id)
                r.refresh_from_db()
                if r.status != "succeeded":
                    raise SystemExit(f"restore failed: {r.error}")
                return r
            return run

        best("restore one 1 MiB file into a new volume", restore(["zz-target/one.bin"]))
        best("restore the whole archive into a new volume", restore(None))
        whole = results["restore the whole archive into a new volume"]
        print()
        print(f"{'':<50} {'time':>9} {'vs whole restore':>17}")
        for name, seconds in results.items():
            print(f"{name:<50} {seconds:>8.3f}s {seconds / whole:>16.3f}x")
        print(f"\n{human(report['tar_bytes'])} of tar, frames of {human(args.frame)}")
    finally:
        bench_cleanup(made, work, keep=args.keep)


if __name__ == "__main__":
    main()
