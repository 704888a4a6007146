"""Containers that must not write while a volume is read or replaced: stopped first
(what was stopped is saved on the row before), always started again after, in reverse
order. Used by backups and by restores in place (both rows have these fields)."""

from __future__ import annotations

from contextlib import contextmanager

from backups.services import stop_label_set
from jobs.runner import JobContext
from project.db import save_fields
from volumes import engine


@contextmanager
def containers_stopped(ctx: JobContext, row):
    """Stop the running containers that use the volume (if `row.stop_containers`, or
    labelled so); always start them again, in reverse order. What is stopped is saved on
    `row` first (a Backup or a Restore: both have these fields), so a crash still knows."""
    containers = [
        c for c in engine.list_containers()
        if engine.HELPER_LABEL not in c.labels and any(m.volume_name == row.volume_name for m in c.mounts)
    ]
    to_stop = sorted(
        (c for c in containers if c.state == "running"
         and (row.stop_containers or stop_label_set(c.labels))),
        key=lambda c: c.name,
    )
    if not to_stop:
        yield []
        return
    save_fields(row, stopped_containers=[{"id": c.id, "name": c.name} for c in to_stop], restart_pending=True)
    stopped = []
    try:
        for c in to_stop:
            ctx.step(f"Stopping container {c.name}")  # a step of its own: no bar stuck at 100%
            engine.stop_container(c.id)
            stopped.append(c)
        yield stopped
    finally:
        errors = start_again(row.stopped_containers, say=ctx.step)
        save_fields(row, restart_pending=bool(errors), restart_error="; ".join(errors))
        if errors:
            ctx.result["warnings"] = ctx.result.get("warnings", []) + errors


def start_again(containers: list[dict], say=None) -> list[str]:
    """Start containers in reverse order; starting a running one is harmless."""
    errors = []
    for c in reversed(containers):
        if say:
            say(f"Starting container {c.get('name')} again")
        try:
            engine.start_container(c["id"])
        except engine.NotFound:
            continue  # removed meanwhile: nothing to start
        except engine.EngineError as exc:
            errors.append(f"Could not start container {c.get('name')} again: {exc}")
    return errors
