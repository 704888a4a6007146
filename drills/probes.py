"""A drill's dump probes: each database dump stored with the backup is checked against its
recorded SHA-256, and, for the recipes that have one (PostgreSQL, SQLite), loaded into a
throw-away server made from the dump's own image (no network, data on tmpfs, removed
after; a dead worker's is found by its helper label) and queried.
"""

from __future__ import annotations

import time

from django.conf import settings

from backups.recipes import POSTGRES, sqlite_recipe
from backups.storage import StorageError, backup_storage
from jobs.runner import JobContext
from volumes import engine

# A path no image has: a tmpfs over an existing folder takes that folder's owner and mode.
PG_ENV = {"POSTGRES_HOST_AUTH_METHOD": "trust", "PGDATA": "/cargohold-drill/pgdata"}
PG_TMPFS = {"/cargohold-drill": "mode=1777"}
PG_QUERY = ('exec psql -X -A -t -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -d postgres -c '
            '"select count(*) from pg_database where not datistemplate"')
SQLITE_PROBE_DB = "/tmp/cargohold-drill.db"


def _chunks(storage, key: str):
    with storage.open_reader(key) as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _checksum(storage, entry: dict) -> str:
    return storage.sha256(entry["key"])


def _exec(ctx: JobContext, cid: str, argv, **kwargs) -> engine.ExecResult:
    return engine.exec_run(cid, list(argv), on_line=lambda line: ctx.log(f"  {line}"),
                           timeout=kwargs.pop("timeout", settings.DUMP_TIMEOUT_SECONDS), **kwargs)


def _wait_postgres(ctx: JobContext, cid: str) -> str:
    deadline = time.monotonic() + settings.DRILL_SERVER_START_SECONDS
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        if not engine.container_running(cid):
            return "the scratch server stopped while starting"
        if engine.exec_run(cid, ["pg_isready", "-q"], timeout=10, killers=()).exit_code == 0:
            return ""
        time.sleep(1)
    return f"the scratch server was not ready after {settings.DRILL_SERVER_START_SECONDS} s"


def _postgres(ctx: JobContext, entry: dict, storage) -> tuple[bool, str]:
    with engine.scratch_container(entry["image"], environment=PG_ENV, tmpfs=PG_TMPFS, purpose="drill-server",
                                  job_id=ctx.job.pk) as cid:
        problem = _wait_postgres(ctx, cid)
        if problem:
            return False, problem
        loaded = _exec(ctx, cid, POSTGRES.load, stdin=_chunks(storage, entry["key"]))
        if not loaded.ok:
            return False, f"psql exited {loaded.exit_code} loading it"
        out = []
        query = _exec(ctx, cid, ("sh", "-c", PG_QUERY), stdout_sink=lambda b: out.append(b), timeout=60)
        text = b"".join(out).decode("utf-8", "replace").strip()
        return query.ok, f"loaded into a scratch server; {text or '?'} databases answer a query"


def _sqlite(ctx: JobContext, entry: dict, storage) -> tuple[bool, str]:
    recipe = sqlite_recipe(SQLITE_PROBE_DB)
    with engine.scratch_container(entry["image"], entrypoint=["sleep"], command=["3600"], purpose="drill-server",
                                  job_id=ctx.job.pk) as cid:
        loaded = _exec(ctx, cid, recipe.load, stdin=_chunks(storage, entry["key"]))
        if not loaded.ok:
            return False, f"sqlite3 .restore exited {loaded.exit_code}"
        out = []
        query = _exec(ctx, cid, ("sqlite3", SQLITE_PROBE_DB, "PRAGMA integrity_check; select count(*) from sqlite_master"),
                      stdout_sink=lambda b: out.append(b), timeout=120)
        lines = b"".join(out).decode("utf-8", "replace").split()
        ok = query.ok and lines[:1] == ["ok"]
        return ok, f"integrity {lines[0] if lines else '?'}; {lines[1] if len(lines) > 1 else '?'} schema objects"


def dumps_probe(ctx: JobContext, backup, check) -> None:
    """Check every dump of `backup`; `check(name, ok, detail)` records each (and raises on a failure)."""
    for entry in (backup.manifest or {}).get("dumps") or []:
        name = f"dump {entry.get('file', '?')}"
        ctx.say(f"Checking the {name}")
        try:
            storage = backup_storage(backup)
            digest = _checksum(storage, entry)
        except (StorageError, KeyError) as exc:
            check(name, False, f"cannot be read: {exc}")
            continue
        check(name, digest == entry.get("sha256"), "SHA-256 as recorded" if digest == entry.get("sha256")
              else f"SHA-256 {digest}, {entry.get('sha256')} recorded")
        recipe = str(entry.get("recipe", ""))
        probe = _postgres if recipe == "postgres" else _sqlite if recipe.startswith("sqlite:") else None
        if probe is None or not entry.get("image"):
            continue
        try:
            ok, detail = probe(ctx, entry, storage)
        except engine.EngineError as exc:
            ok, detail = False, str(exc)
        check(f"{name} loads", ok, detail)
