"""Restore timings for bench/backup.py --restore: the recipe, Cargohold, the host's pipeline.

Each restores the same volume content into a fresh, empty volume:

1. the recipe: `docker run --rm -v new:/data -v $PWD:/backup <helper> tar xzf /backup/backup.tar.gz -C /`
   (from the recipe's own archive, made by the backup part of the bench);
2. Cargohold: the real restore handler (check SHA-256 and every member in one read, create
   the volume, stream storage -> zstd -> engine archive endpoint) in a child process whose
   peak RSS is read, from the Cargohold zstd backup;
3. the host: `zstd -dc host.tar.zst | tar -xpf - -C <new volume's folder>` (GNU tar as root).

Then whether each result is exact: a listing made inside a container (path, type and
mode, owner, size, mtime, symlink target, SHA-256 of every file, hardlink groups) is
compared with the source's, plus the file capability (security.capability) read on the
host. Differences are counted by kind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

LISTING = (
    "cd /data && find . -exec stat -c '%i|%n|%f|%u|%g|%s|%Y|%h|%N' {} + "
    "&& echo '--' && find . -type f -exec sha256sum {} +"
)
FIELDS = ("mode", "uid", "gid", "size", "mtime", "target")


def listing(volume: str, helper: str) -> dict:
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/data:ro", helper,
                          "sh", "-c", LISTING], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    stats, _, sums = out.partition("\n--\n")
    entries, inodes = {}, {}
    for line in stats.splitlines():
        inode, name, mode, uid, gid, size, mtime, _nlink, shown = line.split("|", 8)
        entries[name] = {"mode": mode, "uid": uid, "gid": gid, "size": size, "mtime": mtime,
                         "target": shown.split(" -> ", 1)[1] if " -> " in shown else ""}
        inodes.setdefault(inode, []).append(name)
    for line in sums.splitlines():
        digest, name = line.split(None, 1)
        entries[name]["sha256"] = digest
    for names in inodes.values():
        for name in names:
            entries[name]["links"] = tuple(sorted(names))
    return entries


def capabilities(mountpoint: str) -> dict:
    found = {}
    for folder, dirs, files in os.walk(mountpoint):
        for name in files:
            path = os.path.join(folder, name)
            try:
                found[os.path.relpath(path, mountpoint)] = os.getxattr(path, "security.capability",
                                                                       follow_symlinks=False)
            except OSError:
                continue
    return found


def add_extended(mountpoint: str) -> None:
    """Give the bench volume what dockerd's tar loses: user.* xattrs, ACLs, ns mtimes."""
    picked = 0
    for folder, dirs, files in os.walk(mountpoint):
        for name in files[:3]:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            os.setxattr(path, "user.bench", name.encode("utf-8", "surrogateescape")[:64])
            os.utime(path, ns=(1_600_000_000_123_456_789 + picked, 1_600_000_000_123_456_789 + picked))
            if picked % 2 == 0:
                subprocess.run(["setfacl", "-m", "u:2001:rw-", path], check=True)
            picked += 1
        if picked > 200:
            return


def extended(mountpoint: str) -> dict:
    """Per path: user.* xattrs, nanosecond mtime, sparse or not (read on the host), plus
    every ACL (getfacl -R)."""
    found = {}
    base = os.fsencode(mountpoint)
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if os.path.islink(path):
                continue
            xattrs = tuple((k, os.getxattr(path, k)) for k in sorted(os.listxattr(path)) if k.startswith("user."))
            found[os.path.relpath(path, base)] = (xattrs, st.st_mtime_ns if not os.path.isdir(path) else 0,
                                                   os.path.isfile(path) and st.st_blocks * 512 < st.st_size // 2)
    acls = subprocess.run(["getfacl", "-R", "-p", "-n", "-s", "."], cwd=mountpoint, capture_output=True).stdout
    found[b"<acls>"] = acls
    return found


def differences(source: dict, restored: dict) -> dict[str, int]:
    """How many paths differ, by kind (missing, extra, mode, uid, ..., links, content)."""
    diff: dict[str, int] = {}
    for name in source.keys() - restored.keys():
        diff["missing"] = diff.get("missing", 0) + 1
    for name in restored.keys() - source.keys():
        diff["extra"] = diff.get("extra", 0) + 1
    for name in source.keys() & restored.keys():
        a, b = source[name], restored[name]
        for field in (*FIELDS, "sha256", "links"):
            if a.get(field) != b.get(field):
                key = {"mtime": f"mtime ({'symlink' if a['mode'].startswith('a') else 'dir' if a['mode'].startswith('4') else 'file'})",
                       "uid": "owner", "gid": "owner"}.get(field, field)
                if key == "owner" and a["mode"].startswith("a"):
                    key = "owner (symlink)"
                diff[key] = diff.get(key, 0) + 1
    return diff


def _fresh_volume(engine, name: str) -> str:
    engine.create_volume(name=name, driver="local", options={}, labels={"cargohold.bench": "1"})
    return engine.inspect_volume(name).mountpoint


def peak_rss_kib() -> int:
    """This process's own peak RSS. (Not ru_maxrss: Linux carries it over from the parent
    across exec, so a child of a big bench process would report the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def child(job_id: int) -> None:
    """Run one restore job in this (fresh) process; report time and peak memory."""
    from bench.backup import engine_cpu_seconds, process_cpu_seconds
    from jobs.models import Job
    from jobs.runner import job_perform

    cpu, engine_cpu = process_cpu_seconds(), engine_cpu_seconds()
    started = time.monotonic()
    status = job_perform(job_id)
    seconds = time.monotonic() - started
    job = Job.objects.get(pk=job_id)
    print(json.dumps({"status": status, "error": job.error, "seconds": seconds, "result": job.result,
                      "maxrss_kib": peak_rss_kib(), "cpu_seconds": process_cpu_seconds() - cpu,
                      "engine_cpu_seconds": engine_cpu_seconds() - engine_cpu}))


def run_restores(*, volume: str, out: Path, helper: str, bench_script: str, sh, human) -> dict[str, dict]:
    """Time the three restores of `volume`'s content; returns {name: {seconds, exact, diff}}."""
    from backups.models import Backup
    from unittest import mock

    from restores import services
    from volumes import engine

    source_mount = engine.inspect_volume(volume).mountpoint
    print("listing the source volume ...", flush=True)
    source = listing(volume, helper)
    source_caps = capabilities(source_mount)
    source_ext = extended(source_mount)
    print(f"  {len(source)} paths, {len(source_caps)} with a file capability", flush=True)
    results: dict[str, dict] = {}
    made: list[str] = []

    def judge(name: str, target: str, seconds: float, extra: dict | None = None) -> None:
        got = listing(target, helper)
        diff = differences(source, got)
        caps = capabilities(engine.inspect_volume(target).mountpoint)
        if caps != source_caps:
            diff["capability (xattr)"] = len(set(source_caps.items()) ^ set(caps.items()))
        ext = extended(engine.inspect_volume(target).mountpoint)
        for i, what in enumerate(("user.* xattrs", "ns mtime", "sparse")):
            n = sum(1 for k in source_ext.keys() & ext.keys() if k != b"<acls>" and source_ext[k][i] != ext[k][i])
            if n:
                diff[what] = n
        if ext.get(b"<acls>") != source_ext[b"<acls>"]:
            diff["ACLs"] = 1
        results[name] = {"seconds": seconds, "exact": not diff, "diff": diff, **(extra or {})}
        print(f"  {name}: {seconds:.2f} s, {'exact' if not diff else 'NOT exact: ' + json.dumps(diff)}", flush=True)

    try:
        stamp = time.strftime("%H%M%S")
        recipe_archive = out / "backup.tar.gz"
        if recipe_archive.exists():
            target = f"{volume}-r-recipe-{stamp}"
            _fresh_volume(engine, target)
            made.append(target)
            seconds = sh(f"docker run --rm --network none -v {target}:/data -v {out}:/backup {helper} "
                         f"tar xzf /backup/backup.tar.gz -C /")
            judge("recipe (busybox tar xzf)", target, seconds)

        backup = (Backup.objects.filter(volume_name=volume, status="succeeded", compression="zstd")
                  .order_by("-finished_at").first())
        # The helper path on its default data channel (a FIFO beside the engine where that
        # works), then on the attach stream (dockerd relays the data), then the engine's API.
        # The FIFO row twice: the checked tar sent to the helper (the default), and the
        # compressed bytes (CARGOHOLD_RESTORE_FIFO_FORM=zstd: the helper decompresses again).
        for label, data_path, channel, form in (("Cargohold, helper path", "auto", "auto", "tar"),
                                                (FIFO_ZSTD_ROW, "auto", "auto", "zstd"),
                                                (ATTACH_ROW, "auto", "attach", "tar"),
                                                ("Cargohold, engine API path", "engine", "auto", "tar")):
            target = f"{volume}-r-{data_path}-{channel}-{form}-{stamp}"
            with mock.patch("jobs.services.job_enqueue"):  # the child runs it, not a worker
                restore = services.restore_new_start(backup=backup, volume_name=target, trigger="bench")
            made.append(target)
            os.sync()  # the restore before's dirty pages are not this one's to write back
            proc = subprocess.run([sys.executable, bench_script, "--restore-child", str(restore.job_id)],
                                  env=dict(os.environ, CARGOHOLD_DATA_PATH=data_path,
                                           CARGOHOLD_DATA_CHANNEL=channel, CARGOHOLD_RESTORE_FIFO_FORM=form),
                                  check=True,
                                  capture_output=True, text=True)
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            if report["status"] != "succeeded":
                raise SystemExit(f"the Cargohold restore failed: {report['error']}")
            judge(label, target, report["seconds"], {"maxrss_kib": report["maxrss_kib"], "result": report["result"],
                                                     "cpu_seconds": report.get("cpu_seconds", 0),
                                                     "engine_cpu_seconds": report.get("engine_cpu_seconds", 0)})

        target = f"{volume}-r-host-{stamp}"
        mount = _fresh_volume(engine, target)
        made.append(target)
        os.sync()
        seconds = sh(f"zstd -dc {out / 'host.tar.zst'} | tar -xpf - -C {mount}")
        judge("host zstd -dc | tar -xpf", target, seconds)
    finally:
        for name in made:
            try:
                engine.remove_volume(name)
            except engine.EngineError as exc:
                print(f"could not remove {name}: {exc}")
    return results


ATTACH_ROW = "Cargohold, helper, attach"
FIFO_ZSTD_ROW = "Cargohold, FIFO, zstd form"


def report(results: dict[str, dict]) -> None:
    host = results["host zstd -dc | tar -xpf"]["seconds"]
    print()
    print(f"{'restore':<32} {'time':>9} {'vs host':>8}  exact")
    for name, r in results.items():
        what = "yes" if r["exact"] else "no: " + ", ".join(f"{k} {v}" for k, v in sorted(r["diff"].items()))
        print(f"{name:<32} {r['seconds']:>8.2f}s {r['seconds'] / host:>7.2f}x  {what}")
    for name in ("Cargohold, helper path", FIFO_ZSTD_ROW, ATTACH_ROW, "Cargohold, engine API path"):
        ours = results.get(name)
        if ours and "result" in ours:
            print(f"{name}: check (SHA-256 + every member) {ours['result'].get('check_seconds', 0):.2f} s, "
                  f"write ({ours['result'].get('data_path')}, {ours['result'].get('data_channel', '-')} channel, "
                  f"{ours['result'].get('data_form', '-')} form) "
                  f"{ours['result'].get('write_seconds', 0):.2f} s, "
                  f"job total {ours['seconds']:.2f} s, "
                  f"peak memory {ours.get('maxrss_kib', 0) / 1024:.0f} MiB (VmHWM), "
                  f"CPU: worker {ours.get('cpu_seconds', 0):.2f} s, engine daemons {ours.get('engine_cpu_seconds', 0):.2f} s")
