"""What the engine's disk-usage call costs next to a plain sync, on the real engine.

Creates N volumes (default 200) holding F small files each (default 200), then times
`engine.disk_usage()` (what sizes_refresh uses: the engine walks every local volume)
against `engine.list_volumes()` + `engine.list_containers()` (what every mirror sync
uses), median of R runs each, and prints the ratio. The volumes are removed afterwards.

    .venv/bin/python bench/sizes.py [--volumes 200] [--files 200] [--runs 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings

    from volumes import engine

    prefix = f"chbench-{uuid.uuid4().hex[:6]}-"
    names = [f"{prefix}{i}" for i in range(args.volumes)]
    try:
        for name in names:
            subprocess.run(["docker", "volume", "create", name], check=True, capture_output=True)
        # Fill them all from one container: cheaper than one container per volume.
        mounts = [arg for i, n in enumerate(names) for arg in ("-v", f"{n}:/v/{i}")]
        script = f"for d in /v/*; do i=0; while [ $i -lt {args.files} ]; do echo data-$i > $d/f$i; i=$((i+1)); done; done"
        subprocess.run(["docker", "run", "--rm", "--network", "none", *mounts, settings.HELPER_IMAGE, "sh", "-c", script],
                       check=True, capture_output=True)

        def timed(fn):
            runs = []
            for _ in range(args.runs):
                t = time.perf_counter()
                fn()
                runs.append((time.perf_counter() - t) * 1000)
            return statistics.median(runs)

        sync = timed(lambda: (engine.list_volumes(), engine.list_containers()))
        df = timed(engine.disk_usage)
        total = len(engine.list_volumes())
        print(f"engine has {total} volumes ({args.volumes} of them with {args.files} files each)")
        print(f"{'call':42} {'median ms':>10}")
        print(f"{'list volumes + containers (every sync)':42} {sync:10.1f}")
        print(f"{'disk usage (sizes refresh)':42} {df:10.1f}")
        print(f"ratio disk usage / sync: {df / sync:.1f}x")
        # The event watcher's bound (watch_engine): one measurement at a time, at most one
        # per SIZE_MIN_INTERVAL_SECONDS however many events arrive.
        gap = settings.SIZE_MIN_INTERVAL_SECONDS
        print(f"watcher: at most one per {gap:g} s = at most {df / (gap * 1000) * 100:.2f} % of the engine's time")
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", *names], capture_output=True)


if __name__ == "__main__":
    main()
