"""Loaded with `-p tests.envsetup` before Django's settings are read.

Gives this test process its own var dir (backup folder, SQLite test database), its own
test database (SQLite, or PostgreSQL when CARGOHOLD_TEST_DATABASE=postgres), its own Celery
queue and its own label for engine objects, so that parallel runs (xdist, two developers on
one host) never see each other's work.
"""

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = f"{uuid.uuid4().hex[:6]}{os.getpid()}"
os.environ["CARGOHOLD_TEST_RUN_ID"] = RUN_ID
VAR_DIR = ROOT / "var" / "test" / RUN_ID
VAR_DIR.mkdir(parents=True, exist_ok=True)
os.environ["CARGOHOLD_VAR_DIR"] = str(VAR_DIR)
os.environ["CELERY_QUEUE"] = f"cargohold-test-{RUN_ID}"
os.environ["CARGOHOLD_INSTALL_ID"] = f"test-{RUN_ID}"  # this run's helpers only (volumes.engine.helper_labels)
os.environ["BACKUP_ROOT"] = str(VAR_DIR / "backups")
os.environ.pop("DATABASE_URL", None)


def _postgres_server() -> str:
    """postgres://user:password@host:port/ of the tests' server (scripts/postgres.sh)."""
    url = os.environ.get("CARGOHOLD_TEST_POSTGRES_URL", "")
    url_file = ROOT / "var" / "postgres" / "test-url"
    if not url and url_file.exists():
        url = url_file.read_text().strip()
    if not url:
        raise RuntimeError(
            "CARGOHOLD_TEST_DATABASE=postgres, but the tests' PostgreSQL is not set up "
            f"({url_file} is missing): run `make setup` (scripts/postgres.sh, needs Debian's "
            "postgresql) or set CARGOHOLD_TEST_POSTGRES_URL=postgres://user:password@host:port/."
        )
    return url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


# Which database the tests run on: sqlite (the embedded default) or postgres (production's).
# CARGOHOLD_TEST_DB is the test database pytest-django creates (settings' TEST NAME, no
# xdist suffix: see tests/conftest.py) and CARGOHOLD_TEST_DATABASE_URL the same database
# for the worker, beat and watcher processes the tests start (tests.conftest._test_env).
TEST_DATABASE = os.environ.setdefault("CARGOHOLD_TEST_DATABASE", "sqlite")
if TEST_DATABASE == "sqlite":
    os.environ["CARGOHOLD_TEST_DB"] = str(VAR_DIR / "test-db.sqlite3")
    os.environ["CARGOHOLD_TEST_DATABASE_URL"] = f"sqlite:///{os.environ['CARGOHOLD_TEST_DB']}"
elif TEST_DATABASE == "postgres":
    # ..._<pid>: scripts/postgres.sh drops the databases of runs whose process is gone.
    os.environ["CARGOHOLD_TEST_DB"] = f"test_cargohold_{RUN_ID[:6]}_{os.getpid()}"
    os.environ["CARGOHOLD_TEST_DATABASE_URL"] = _with_database(_postgres_server(), os.environ["CARGOHOLD_TEST_DB"])
    # This process too names the test database (never another one on that server).
    os.environ["DATABASE_URL"] = os.environ["CARGOHOLD_TEST_DATABASE_URL"]
else:
    raise RuntimeError(f"CARGOHOLD_TEST_DATABASE={TEST_DATABASE!r}: use sqlite or postgres")

# Playwright's sync API keeps an event loop in the main thread; the ORM calls in tests are
# still synchronous, so Django's async-safety guard would only get in the way.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
os.environ["CELERY_EXTRA_IMPORTS"] = "tests.jobs.tasks"
# The overview counts in every request, never shows the last figures stale: a count slowed
# by a loaded machine must not make a test that changes the mirror read the figures before
# it (the cache outlives a test). tests/insights/test_stale_figures.py sets it to 0.
os.environ["CARGOHOLD_FIGURES_SLOW_MS"] = str(10**9)
