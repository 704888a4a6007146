"""Repairs after a crash, run when a worker starts and by the periodic sweep.

Apps register functions here (restart containers a killed backup left stopped, put
back a volume from its safety backup...). Each must be idempotent and safe to run
while other jobs are running.
"""

import logging

logger = logging.getLogger(__name__)

_steps = []


def register(fn):
    if fn not in _steps:
        _steps.append(fn)
    return fn


def run_all() -> None:
    from jobs.locks import locks_release_ended

    # First: steps below take the locks that dead jobs left behind.
    for step in [locks_release_ended, *_steps]:
        try:
            step()
        except Exception:
            logger.exception("recovery step %s failed", getattr(step, "__name__", step))
