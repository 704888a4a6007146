"""Fixtures of the multi-host tests: registered hosts on the extra engines, and their
workers as real processes (`manage.py host_worker --host NAME`)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import Process


def host_worker_process(name: str, *, watcher: bool = True) -> Process:
    args = [sys.executable, "manage.py", "host_worker", "--host", name, "--concurrency", "1"]
    if not watcher:
        args.append("--no-watcher")
    return Process(f"host-{name}", args, ready_text="ready.")


@pytest.fixture
def host_workers(django_db_setup):
    """start(name) -> a running host_worker for the registered host `name` (stopped after the test)."""
    started: list[Process] = []

    def start(name: str, *, watcher: bool = True) -> Process:
        proc = host_worker_process(name, watcher=watcher).start(timeout=90)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def registered_hosts(extra_engine_e1, extra_engine_e2):
    """Hosts e1 (unix socket) and e2 (tcp:// with TLS client certificates) registered as an
    Admin would (hosts.services.host_save)."""
    from hosts.services import host_save

    hosts = {}
    for engine in (extra_engine_e1, extra_engine_e2):
        hosts[engine.name], _ = host_save(name=engine.name, actor_name="test", **engine.host_fields())
    return hosts
