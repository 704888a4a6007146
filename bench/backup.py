#!/usr/bin/env python
"""Backup speed, side by side on one volume: the usual recipe, Cargohold, the host's tar|zstd.

    .venv/bin/python bench/backup.py [--size 1GiB] [--gzip] [--runs 1] [--keep] [--restore]

Builds a volume of mixed content (bench/volume_content.py: compressible logs, random
data, ~20,000 small files, links, several owners, a sparse file, a capability, a name
that is not UTF-8), warms the page cache, then times:

1. the recipe: `docker run --rm -v vol:/data -v $PWD:/backup <helper> tar czf /backup/backup.tar.gz /data`
2. Cargohold: the real backup handler (tar | zstd in the data helper next to the data,
   stored, hashed and walked on the way, atomic commit, verify, manifest) in a child
   process whose peak RSS is read (VmHWM), on its default data channel (a FIFO beside
   the engine where that works: volumes.datahelper.data_channel) and on the attach stream
   (CARGOHOLD_DATA_CHANNEL=attach: dockerd relays every byte); and the same on the
   engine-API path (CARGOHOLD_DATA_PATH=engine: the engine's tar, compressed in the worker);
3. the engine's archive endpoint read by curl and piped into `zstd -T0 -3` (the limit of
   anything that goes through the engine's API, as it must for a remote engine);
4. the host's own `tar -cf - -C <mountpoint> . | zstd -T0 -3` (the near-limit here).

With --restore, then restores the same content into fresh volumes three ways (the recipe's
`tar xzf`, Cargohold, the host's `zstd -dc | tar -xpf`) and says whether each is exact
(bench/restore.py), both data paths for Cargohold; exact includes user.* xattrs, ACLs,
nanosecond mtimes and sparse files.

Needs root on the engine's host (it writes the volume through its mountpoint) and the
helper image. Uses a throw-away database and backup folder; removes the volume after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1GiB, 512MiB, 4G)")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    factor = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit[0]]
    return int(number * factor)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def sh(cmd: str, **kwargs) -> float:
    started = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, **kwargs)
    return time.monotonic() - started


def setup_django(var_dir: Path) -> None:
    os.environ["CARGOHOLD_VAR_DIR"] = str(var_dir)
    os.environ["BACKUP_ROOT"] = str(var_dir / "backups")
    os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'bench.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def bench_start(prefix: str) -> Path:
    """What every bench starts with: root (volumes are filled through their mountpoints),
    a throw-away var folder and database, migrated. Environment for the settings goes
    before this call."""
    if os.geteuid() != 0:
        raise SystemExit("run as root on the engine's host: the volume is filled through its mountpoint")
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=str(ROOT / "var")))
    setup_django(work)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return work


def bench_cleanup(volumes: list[str], work: Path, *, keep: bool) -> None:
    """Remove the bench's volumes and folder (or say where they are, with --keep)."""
    from volumes import engine

    if keep:
        print(f"kept {', '.join(volumes)} and {work}")
        return
    for name in volumes:
        try:
            engine.remove_volume(name)
        except engine.EngineError as exc:
            print(f"could not remove {name}: {exc}")
    shutil.rmtree(work, ignore_errors=True)


def child(job_id: int) -> None:
    """Run one backup job in this (fresh) process and report time, peak memory and CPU."""
    from jobs.runner import job_perform

    cpu, engine_cpu = process_cpu_seconds(), engine_cpu_seconds()
    started = time.monotonic()
    status = job_perform(job_id)
    seconds = time.monotonic() - started
    from jobs.models import Job

    job = Job.objects.get(pk=job_id)
    print(json.dumps({
        "status": status, "error": job.error, "seconds": seconds, "result": job.result,
        "maxrss_kib": peak_rss_kib(), "cpu_seconds": process_cpu_seconds() - cpu,
        "engine_cpu_seconds": engine_cpu_seconds() - engine_cpu,
    }))


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def engine_cpu_seconds() -> float:
    """CPU time of the engine's own daemons (dockerd, containerd on /var/run/docker.sock's
    engine) so far: what relaying the helper's data costs beside the worker and the helper.
    Other work on the same engine counts too (compare rows of a quiet run)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if not ((comm == "dockerd" and "--data-root" not in cmdline)
                    or (comm == "containerd" and "/var/run/docker/containerd" in cmdline)):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


def peak_rss_kib() -> int:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that over fork and exec,
    so a child of a big parent would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cargohold_backup(volume: str, compression: str, level: int | None = None, data_path: str = "auto",
                     repository=None, channel: str = "auto") -> dict:
    """One real backup job in a child process (into `repository`, None: the default one)."""
    from backups import services
    from backups.models import Backup
    from jobs import tasks

    tasks.run_job.apply_async = lambda *args, **kwargs: None  # the child runs it, not a worker
    backup = services.backup_start(volume_name=volume, compression=compression, trigger="bench",
                                   repository=repository)
    env = dict(os.environ, CARGOHOLD_DATA_PATH=data_path, CARGOHOLD_DATA_CHANNEL=channel)
    if level is not None:
        env["BACKUP_ZSTD_LEVEL"] = str(level)
    out = subprocess.run([sys.executable, __file__, "--child", str(backup.job_id)], env=env,
                         check=True, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["channel"] = (report.get("result") or {}).get("data_channel", "-")
    backup = Backup.objects.get(pk=backup.pk)
    if backup.status != Backup.Status.SUCCEEDED:
        raise SystemExit(f"the Cargohold backup failed: {backup.error}")
    report.update(size=backup.size_bytes, tar_bytes=backup.bytes_read, files=backup.file_count,
                  location=backup.location)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="volume size (default 1GiB)")
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat each measurement; the best time counts")
    parser.add_argument("--gzip", action="store_true", help="also time Cargohold with gzip")
    parser.add_argument("--skip-recipe", action="store_true", help="skip the slow recipe")
    parser.add_argument("--zstd-levels", type=lambda t: [int(x) for x in t.split(",") if x], default=[],
                        help="also time Cargohold at these zstd levels (BACKUP_ZSTD_LEVEL), e.g. 1,2")
    parser.add_argument("--keep", action="store_true", help="keep the volume and the files")
    parser.add_argument("--restore", action="store_true",
                        help="also time restores (recipe, Cargohold, host) and check they are exact")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--restore-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        setup_django(Path(os.environ["CARGOHOLD_VAR_DIR"]))
        child(args.child)
        return
    if args.restore_child:
        setup_django(Path(os.environ["CARGOHOLD_VAR_DIR"]))
        from bench.restore import child as restore_child

        restore_child(args.restore_child)
        return

    work = bench_start("cargohold-bench-")
    from bench.volume_content import fill
    from django.conf import settings
    from volumes import engine
    from volumes.services import mirror_sync

    helper = settings.HELPER_IMAGE
    volume = f"chbench-{uuid.uuid4().hex[:8]}"
    results: dict[str, dict] = {}
    try:
        engine.create_volume(name=volume, driver="local", options={}, labels={"cargohold.bench": "1"})
        mountpoint = engine.inspect_volume(volume).mountpoint
        print(f"building {human(args.size)} of mixed content in volume {volume} ...", flush=True)
        started = time.monotonic()
        summary = fill(mountpoint, size=args.size, small_files=args.small_files)
        from bench.restore import add_extended

        add_extended(mountpoint)  # user.* xattrs, ACLs, nanosecond mtimes: what dockerd's tar loses
        print(f"  {human(summary['bytes'])} in {time.monotonic() - started:.1f} s", flush=True)
        sh(f"tar -cf - -C {mountpoint} . | cat > /dev/null")  # warm the page cache for everyone
        mirror_sync()

        def best(name: str, fn) -> None:
            for _ in range(args.runs):
                result = fn()
                if name not in results or result["seconds"] < results[name]["seconds"]:
                    results[name] = result
            print(f"  {name}: {results[name]['seconds']:.2f} s", flush=True)

        out = work / "out"
        out.mkdir()
        if not args.skip_recipe:
            def recipe():
                target = out / "backup.tar.gz"
                target.unlink(missing_ok=True)
                seconds = sh(f"docker run --rm --network none -v {volume}:/data -v {out}:/backup {helper} "
                             f"tar czf /backup/backup.tar.gz /data")
                return {"seconds": seconds, "size": target.stat().st_size}
            best("recipe (busybox tar czf)", recipe)

        def ours(compression: str, level: int | None = None, data_path: str = "auto", channel: str = "auto"):
            return lambda: cargohold_backup(volume, compression, level, data_path, channel=channel)
        # The engine path first: the restore part restores the newest (the helper's) backup.
        best("Cargohold, engine API path", ours("zstd", data_path="engine"))
        # The helper on the attach stream (dockerd relays every byte); the row after it is
        # the default data channel (a FIFO beside the engine where that works).
        best("Cargohold, helper, attach", ours("zstd", channel="attach"))
        best("Cargohold (zstd, verified)", ours("zstd"))
        for level in args.zstd_levels:
            best(f"Cargohold (zstd -{level}, verified)", ours("zstd", level))
        if args.gzip:
            best("Cargohold (gzip, verified)", ours("gzip"))

        if shutil.which("curl") and not os.environ.get("DOCKER_HOST", "").startswith("tcp"):
            def engine_pipe():
                # The same engine archive endpoint Cargohold reads, piped into zstd by the
                # shell: the limit of any backup that goes through the engine's API.
                target = out / "engine.tar.zst"
                target.unlink(missing_ok=True)
                with engine.helper_container(volume, read_only=True, purpose="bench") as cid:
                    seconds = sh(f"curl -sf --unix-socket /var/run/docker.sock "
                                 f"'http://engine/containers/{cid}/archive?path=/data' | zstd -q -T0 -3 -o {target}")
                return {"seconds": seconds, "size": target.stat().st_size}
            best("engine API | zstd -T0 -3", engine_pipe)

        def host():
            target = out / "host.tar.zst"
            target.unlink(missing_ok=True)
            seconds = sh(f"tar -cf - -C {mountpoint} . | zstd -q -T0 -3 -o {target}")
            return {"seconds": seconds, "size": target.stat().st_size}
        best("host tar | zstd -T0 -3", host)

        report(results, args.size)
        if args.restore:
            from bench.restore import report as restore_report, run_restores

            print("\nrestoring the same content three ways ...", flush=True)
            restore_report(run_restores(volume=volume, out=out, helper=helper, bench_script=__file__, sh=sh,
                                        human=human))
    finally:
        bench_cleanup([volume], work, keep=args.keep)


def report(results: dict[str, dict], size: int) -> None:
    host = results["host tar | zstd -T0 -3"]["seconds"]
    ours = results["Cargohold (zstd, verified)"]
    tar_bytes = ours["tar_bytes"]
    print()
    print(f"{'':<30} {'time':>9} {'vs host':>8} {'stored':>11} {'of tar':>7}")
    for name, r in results.items():
        print(f"{name:<30} {r['seconds']:>8.2f}s {r['seconds'] / host:>7.2f}x {human(r['size']):>11} "
              f"{r['size'] / tar_bytes * 100:>6.1f}%")
    print()
    print(f"volume: {human(size)} requested, {human(tar_bytes)} of tar stream, {ours['files']} files")
    for name, r in results.items():
        if "result" in r:
            t = r["result"]
            print(f"{name} ({t.get('data_channel', '-')} channel): stream+compress+hash+commit "
                  f"{t.get('stream_seconds', 0):.2f} s, "
                  f"verify {t.get('verify_seconds', 0):.2f} s, job total {r['seconds']:.2f} s")
    if "recipe (busybox tar czf)" in results:
        print(f"speed-up over the recipe: {results['recipe (busybox tar czf)']['seconds'] / ours['seconds']:.1f}x")
    for name, r in results.items():
        if "maxrss_kib" in r:
            print(f"peak memory of the process running {name}: {r['maxrss_kib'] / 1024:.0f} MiB (VmHWM)")
    for name, r in results.items():
        if "cpu_seconds" in r:
            print(f"CPU of {name}: worker {r['cpu_seconds']:.2f} s, engine daemons (dockerd, containerd) "
                  f"{r['engine_cpu_seconds']:.2f} s")


if __name__ == "__main__":
    main()
