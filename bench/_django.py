"""Set up Django on a scratch database for a benchmark (the dev database is not touched)."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_scratch_django(database_url: str = "") -> Path:
    """`database_url`: a database of its own for the bench (bench.many_hosts makes and drops one
    on a PostgreSQL server); blank: a SQLite file in the scratch folder."""
    scratch = Path(tempfile.mkdtemp(prefix="cargohold-bench-"))
    os.environ["CARGOHOLD_VAR_DIR"] = str(scratch)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return scratch


def timings(fn, n: int) -> list[float]:
    import time

    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    import statistics

    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
