#!/usr/bin/env python
"""restic repositories: first backup, a second of the unchanged volume, a third after 1%
of the files changed; time and what each added, against the first.

    .venv/bin/python bench/restic.py [--size 1GiB] [--small-files 20000] [--keep]

Builds the mixed volume of bench/backup.py (bench/volume_content.py), makes a local
restic repository in a scratch folder, and runs each backup as the real backup job
(restic in the data helper, --json progress, the file index from `restic ls`) in a child
process. Targets: the unchanged second backup in at most 10% of the first's time and
adding at most 1% of its stored bytes; after changing 1% of the files, at most 5% added.
For reference it also times one archive backup (tar | zstd) of the same volume.

Needs root on the engine's host and the data helper image; removes what it made.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backup import cargohold_backup, human, parse_size, setup_django, sh


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, check=True, text=True).stdout.split()[0])


def change_files(root: Path, share: float, seed: int = 7) -> tuple[int, int]:
    """Rewrite `share` of the regular files (by count) with new random bytes of the same
    size; returns (files, bytes) changed."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    rng = random.Random(seed)
    chosen = rng.sample(files, max(1, int(len(files) * share)))
    changed = 0
    for path in chosen:
        size = path.stat().st_size
        st = path.stat()
        path.write_bytes(os.urandom(size))
        os.chown(path, st.st_uid, st.st_gid)
        changed += size
    return len(chosen), changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from bench.backup import child

        setup_django(Path(os.environ["CARGOHOLD_VAR_DIR"]))
        child(args.child)
        return
    from bench.backup import bench_cleanup, bench_start

    work = bench_start("cargohold-bench-restic-")
    import bench.backup as bench_backup
    from bench.volume_content import fill
    from repositories import restic
    from repositories.models import Repository
    from volumes import engine
    from volumes.services import mirror_sync

    bench_backup.__file__ = __file__  # cargohold_backup runs `<this script> --child <job>`
    volume = f"chbench-{uuid.uuid4().hex[:8]}"
    rows = []
    try:
        engine.create_volume(name=volume, driver="local", options={}, labels={"cargohold.bench": "1"})
        mountpoint = Path(engine.inspect_volume(volume).mountpoint)
        print(f"building {human(args.size)} of mixed content in volume {volume} ...", flush=True)
        summary = fill(mountpoint, size=args.size, small_files=args.small_files)
        print(f"  {human(summary['bytes'])}", flush=True)
        sh(f"tar -cf - -C {mountpoint} . | cat > /dev/null")  # warm the page cache
        mirror_sync()
        repo = Repository(name="bench-restic", format=Repository.Format.RESTIC, url=str(work / "restic"))
        repo.set_secrets(password=uuid.uuid4().hex)
        repo.save()
        restic.restic_init(repo)

        def run(label: str, repository) -> dict:
            before = du(work / "restic")
            report = cargohold_backup(volume, "zstd", repository=repository)
            report["label"] = label
            report["repo_growth"] = du(work / "restic") - before
            rows.append(report)
            res = report.get("result") or {}
            print(f"  {label}: {report['seconds']:.2f} s, added {human(report['size'] or 0)} "
                  f"(restic's helper {res.get('backup_seconds', '-')} s of which restic itself "
                  f"{res.get('restic_seconds', '-')} s; ls {res.get('ls_seconds', '-')} s)", flush=True)
            return report

        run("archive (tar | zstd), for reference", None)
        first = run("restic: first backup", repo)
        run("restic: second, unchanged", repo)
        files, changed = change_files(mountpoint, 0.01)
        print(f"  changed {files} files ({human(changed)})", flush=True)
        run(f"restic: after changing 1% of the files ({files} files, {human(changed)})", repo)
        report(rows, first)
    finally:
        bench_cleanup([volume], work, keep=args.keep)


def report(rows: list[dict], first: dict) -> None:
    print()
    print("| run | time | vs first restic | added to the repository | vs first restic |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        restic_row = row["label"].startswith("restic")
        t = f"{row['seconds'] / first['seconds'] * 100:.1f}%" if restic_row else ""
        a = f"{(row['size'] or 0) / (first['size'] or 1) * 100:.2f}%" if restic_row else ""
        print(f"| {row['label']} | {row['seconds']:.2f} s | {t} | {human(row['size'] or 0)} "
              f"(folder +{human(row['repo_growth'])}) | {a} |")


if __name__ == "__main__":
    main()
