"""Volume references across hosts: pure logic, no database, no engine.

A volume is (host, name). Everywhere Cargohold keeps a volume's name (the mirror, backups,
restores, policies, jobs, locks, team rules) it keeps its *reference*: the engine's name for
a volume of the default host (so a single-host install looks and works as before), and
`host:name` for any other host. `:` never occurs in a Docker volume name (the engine's rule
is `[A-Za-z0-9][A-Za-z0-9_.-]*`), so a reference is unambiguous and unique across hosts.

The engine adapter (volumes.engine) turns references into the engine's own names at its
boundary, and the engine's names into references, for the one host its worker serves.
"""

from __future__ import annotations

import os
import re

from django.conf import settings

from project.errors import CargoholdError

SEP = ":"
HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HOST_NAME_RULE = "lower-case letters, digits and dashes, starting with a letter or digit, at most 63"


class WrongHost(CargoholdError):
    """A volume of another host reached this host's worker (a message on the wrong queue)."""


def default_host_name() -> str:
    return settings.DEFAULT_HOST_NAME


def worker_host_name() -> str:
    """The host this process's engine connection serves: `host_worker --host NAME` sets
    CARGOHOLD_WORKER_HOST for its worker and watcher; any other process serves the default
    host (the engine at DOCKER_HOST)."""
    return os.environ.get("CARGOHOLD_WORKER_HOST") or settings.WORKER_HOST or default_host_name()


def split_ref(ref: str) -> tuple[str, str]:
    """("local", "pgdata") for "pgdata"; ("e1", "pgdata") for "e1:pgdata"."""
    host, sep, name = (ref or "").rpartition(SEP)
    return (host if sep else default_host_name()), name


def make_ref(host_name: str, name: str) -> str:
    if not host_name or host_name == default_host_name():
        return name
    return f"{host_name}{SEP}{name}"


def host_of(ref: str) -> str:
    return split_ref(ref)[0]


def engine_name(ref: str) -> str:
    """The engine's own name for `ref`, which must be on the host this worker serves."""
    host, name = split_ref(ref)
    here = worker_host_name()
    if host != here:
        raise WrongHost(
            f"The volume {ref} is on the host {host}, but this worker serves the host {here}: "
            f"start a worker for {host} (python manage.py host_worker --host {host})."
        )
    return name


def from_engine(name: str) -> str:
    """The reference of the engine's volume `name` on this worker's host."""
    return make_ref(worker_host_name(), name) if name else name


def queue_for(host_name: str | None) -> str:
    """The Celery queue of a host's worker: the default queue for the default host (so a
    single-host install runs as before), `<default>.host.<name>` for any other."""
    base = settings.CELERY_TASK_DEFAULT_QUEUE
    if not host_name or host_name == default_host_name():
        return base
    return f"{base}.host.{host_name}"


def is_here(ref: str) -> bool:
    """Whether the volume `ref` is on the host this worker serves (recovery steps repair
    only what their own engine holds)."""
    return host_of(ref) == worker_host_name()
