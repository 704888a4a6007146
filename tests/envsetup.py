"""Loaded with `-p tests.envsetup` before Django's settings are read.

Gives this test process its own var dir (SQLite test database, backup folder), its own
Celery queue and its own label for engine objects, so that parallel runs (xdist, two
developers on one host) never see each other's work.
"""

import os
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = f"{uuid.uuid4().hex[:6]}{os.getpid()}"
os.environ["CARGOHOLD_TEST_RUN_ID"] = RUN_ID
VAR_DIR = ROOT / "var" / "test" / RUN_ID
VAR_DIR.mkdir(parents=True, exist_ok=True)
os.environ["CARGOHOLD_VAR_DIR"] = str(VAR_DIR)
os.environ["CARGOHOLD_TEST_DB"] = str(VAR_DIR / "test-db.sqlite3")
os.environ["CELERY_QUEUE"] = f"cargohold-test-{RUN_ID}"
os.environ["CARGOHOLD_INSTALL_ID"] = f"test-{RUN_ID}"  # this run's helpers only (volumes.engine.helper_labels)
os.environ["BACKUP_ROOT"] = str(VAR_DIR / "backups")
os.environ.pop("DATABASE_URL", None)
# Playwright's sync API keeps an event loop in the main thread; the ORM calls in tests are
# still synchronous, so Django's async-safety guard would only get in the way.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
os.environ["CELERY_EXTRA_IMPORTS"] = "tests.jobs.tasks"
