"""Who mounts a volume, by the engine's own record (its events), for restores in place."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import docker
import docker.errors


logger = logging.getLogger(__name__)

from hosts import refs
from volumes.engine.core import *  # noqa: F403  (the adapter's shared pieces)
from volumes.engine.core import _parse_time, _short, _str_dict, _text, _translate

logger = logging.getLogger(__name__)

# --- who mounts a volume, by the engine's own record -----------------------------------


@dataclass(frozen=True)
class VolumeMount:
    """A container mounting a volume (started with it, or written into by `docker cp`)."""

    container_id: str
    container_name: str  # "" when the container was gone before it could be looked at
    labels: dict
    read_only: bool


def engine_time() -> datetime:
    """The engine's clock: event times are the engine's, and the worker's clock may differ."""
    with _translate("Reading the engine's clock"):
        data = api().info()
    return _parse_time(data.get("SystemTime")) or datetime.now(timezone.utc)


def _nanos(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _nano_text(nano: int) -> str:
    seconds, rest = divmod(nano, 10**9)
    return f"{seconds}.{rest:09d}"


class MountWatch:
    """The mounts of one volume since `since`, followed live in a thread (see watch_mounts).

    Live, because the engine replays only its last 256 events: on a busy host a replay at
    the end of a long restore would have lost the early ones. The container behind each
    mount is looked up at once, while it most likely still exists.
    """

    def __init__(self, volume_name: str, since: datetime):
        self.volume_name = volume_name
        self._since_nano = _nanos(since)
        self._last_nano = 0
        self._seen: dict[tuple[str, int], VolumeMount] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._stream = None
        self._thread = threading.Thread(target=self._follow, daemon=True, name=f"mounts of {volume_name}")

    def _filters(self) -> dict:
        return {"type": ["volume"], "volume": [refs.engine_name(self.volume_name)], "event": ["mount"]}

    def _from(self) -> str:
        return _nano_text(self._last_nano or self._since_nano)

    def _follow(self) -> None:
        while not self._stopped.is_set():
            try:
                stream = api().events(since=self._from(), filters=self._filters(), decode=True)
                with self._lock:
                    self._stream = stream
                    if self._stopped.is_set():
                        stream.close()
                        return
                for event in stream:  # ends quietly when the connection breaks: then reconnect
                    self._record(event)
            except Exception as exc:  # the engine restarting, say: the replay from _from() fills the gap
                if self._stopped.is_set():
                    return
                logger.warning("following the mounts of %s: %s", self.volume_name, _short(exc))
            self._stopped.wait(1)

    def _record(self, event: dict) -> None:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        container_id = _text(attributes.get("container"), 64)
        nano = int(event.get("timeNano") or 0)
        if not container_id or (container_id, nano) in self._seen:
            return
        name, labels = self._identify(container_id)
        with self._lock:
            self._seen[(container_id, nano)] = VolumeMount(
                container_id=container_id, container_name=name, labels=labels,
                read_only=str(attributes.get("read/write", "true")).lower() == "false",
            )
            self._last_nano = max(self._last_nano, nano)

    def _identify(self, container_id: str) -> tuple[str, dict]:
        """Name and labels: from the container, or, when it was removed already (`docker
        run --rm`), from its own events, which carry both."""
        try:
            data = api().inspect_container(container_id)
            return _text(data.get("Name"), 255).lstrip("/"), _str_dict((data.get("Config") or {}).get("Labels"))
        except docker.errors.NotFound:
            pass
        except Exception:
            return "", {}
        try:
            until = _nanos(engine_time())
            for event in api().events(since=_nano_text(self._since_nano), until=_nano_text(until),
                                      filters={"type": ["container"], "container": [container_id]}, decode=True):
                attributes = dict((event.get("Actor") or {}).get("Attributes") or {})
                name = attributes.pop("name", "")
                for key in ("image", "exitCode", "signal", "execID", "execDuration"):
                    attributes.pop(key, None)
                if name:
                    return _text(name, 255), _str_dict(attributes)
        except Exception:
            pass
        return "", {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
        self._thread.join(timeout=10)

    def mounts(self) -> list[VolumeMount]:
        """Every mount so far, up to the engine's present moment: what the live stream has
        not delivered yet is read from the engine's replay."""
        until = engine_time()
        with _translate(f"Reading the mount events of volume {self.volume_name}"):
            for event in api().events(since=self._from(), until=_nano_text(_nanos(until)),
                                      filters=self._filters(), decode=True):
                self._record(event)
        with self._lock:
            return list(self._seen.values())


@contextmanager
def watch_mounts(volume_name: str) -> Iterator[MountWatch]:
    """Every container that mounts `volume_name` while the block runs, even one started
    and removed again before it ends; `watch.mounts()` lists them."""
    watch = MountWatch(volume_name, since=engine_time())
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()


