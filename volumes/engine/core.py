"""The engine adapter's core: our errors and dataclasses, the client, inventory, and
volume and container calls (see the package's docstring)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import docker
import docker.errors
import docker.tls
import requests.exceptions
from django.conf import settings

from hosts import refs
from volumes.engine.client import api, half_close, over_tls, recv_some, reset_client, tls_client  # noqa: F401  (engine.<name>)
from project.errors import CargoholdError
from project.redact import scrubbed_text

logger = logging.getLogger(__name__)

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
HELPER_LABEL = "cargohold.helper"  # on every container Cargohold starts
INSTALL_LABEL = "cargohold.install"  # which Cargohold (one database) started it: settings.INSTALL_ID
MOUNT_POINT = "/data"  # where a helper sees the volume


def helper_labels(purpose: str, job_id: int | None, **extra: str) -> dict[str, str]:
    """The labels of a container Cargohold starts. Job ids are only unique within one
    database, so the installation's id comes with them: another Cargohold on the same
    engine (a second install, a parallel test run) never removes our helpers of "job 3"."""
    return {HELPER_LABEL: purpose, INSTALL_LABEL: settings.INSTALL_ID, "cargohold.job": str(job_id or ""), **extra}


def is_helper_of(labels: dict, job_ids: set[str]) -> bool:
    """Whether a container with these labels is this installation's helper of one of `job_ids`."""
    return (HELPER_LABEL in labels and labels.get(INSTALL_LABEL, "") == settings.INSTALL_ID
            and labels.get("cargohold.job") in job_ids)


# --- our exceptions -----------------------------------------------------------------


class EngineError(CargoholdError):
    """The engine refused or failed a request.

    The engine's words repeat what it was given ("mount ... data: username=u,password=p"):
    the message is scrubbed here, once, before any job row, page, audit event or log sees it.
    """

    def __init__(self, message="", *args):
        super().__init__(scrubbed_text(message), *args)


class EngineUnavailable(EngineError):
    """The engine cannot be reached (socket missing, daemon down, timeout)."""


class NotFound(EngineError):
    pass


class Conflict(EngineError):
    """In use, already exists, or otherwise conflicting with the engine's state."""


# --- our dataclasses ----------------------------------------------------------------


@dataclass(frozen=True)
class EngineVolume:
    name: str
    driver: str
    mountpoint: str
    scope: str
    options: dict
    labels: dict
    created_at: datetime | None
    status: dict = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels or bool(_HEX64.match(refs.split_ref(self.name)[1]))


@dataclass(frozen=True)
class EngineMount:
    kind: str  # volume / bind / tmpfs / npipe / cluster
    source: str  # volume name for volumes, host path for binds, "" for tmpfs
    destination: str
    read_only: bool
    volume_name: str = ""


@dataclass(frozen=True)
class EngineContainer:
    id: str
    name: str
    image: str
    state: str
    status: str
    labels: dict
    created_at: datetime | None
    mounts: tuple[EngineMount, ...]

    @property
    def compose_project(self) -> str:
        return self.labels.get(COMPOSE_PROJECT_LABEL, "")

    @property
    def compose_service(self) -> str:
        return self.labels.get(COMPOSE_SERVICE_LABEL, "")


@dataclass(frozen=True)
class EngineInfo:
    id: str
    host_name: str
    server_version: str
    api_version: str
    storage_driver: str
    docker_root_dir: str
    volume_plugins: tuple[str, ...]
    containers: int
    images: int


@dataclass(frozen=True)
class DiskUsage:
    volume_sizes: dict[str, int]  # name -> bytes (volumes whose driver reports no size are absent)
    container_sizes: dict[str, int]  # container id -> bytes of the writable layer


# --- helpers ------------------------------------------------------------------------


def _parse_time(value) -> datetime | None:
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value)
    # "2024-05-01T10:20:30.123456789Z" / "+02:00": Python wants at most microseconds.
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        return None
    base, frac, tz = match.groups()
    frac = (frac or ".0")[:7]
    tz = "+00:00" if tz in (None, "Z") else tz
    try:
        return datetime.fromisoformat(base + frac + tz).astimezone(timezone.utc)
    except ValueError:
        return None


def _text(value, limit: int = 4096) -> str:
    """Names and labels come from the engine: keep them strings of sane length."""
    if value is None:
        return ""
    return str(value)[:limit]


def _str_dict(value) -> dict:
    if not isinstance(value, dict):
        return {}
    return {_text(k, 1024): _text(v) for k, v in value.items()}


def _volume_from_api(data: dict) -> EngineVolume:
    return EngineVolume(
        name=refs.from_engine(_text(data.get("Name"), 255)),
        driver=_text(data.get("Driver"), 255),
        mountpoint=_text(data.get("Mountpoint")),
        scope=_text(data.get("Scope"), 32),
        options=_str_dict(data.get("Options")),
        labels=_str_dict(data.get("Labels")),
        created_at=_parse_time(data.get("CreatedAt")),
        status=data.get("Status") if isinstance(data.get("Status"), dict) else {},
    )


def _mount_from_api(data: dict) -> EngineMount:
    kind = _text(data.get("Type"), 16) or "volume"
    volume_name = refs.from_engine(_text(data.get("Name"), 255)) if kind == "volume" else ""
    return EngineMount(
        kind=kind,
        source=volume_name if kind == "volume" else _text(data.get("Source")),
        destination=_text(data.get("Destination")),
        read_only=not data.get("RW", True),
        volume_name=volume_name,
    )


def _container_from_api(data: dict) -> EngineContainer:
    names = data.get("Names") or []
    name = _text(names[0] if names else data.get("Id", "")[:12], 255).lstrip("/")
    return EngineContainer(
        id=_text(data.get("Id"), 64),
        name=name,
        image=_text(data.get("Image"), 512),
        state=_text(data.get("State"), 32),
        status=_text(data.get("Status"), 255),
        labels=_str_dict(data.get("Labels")),
        created_at=_parse_time(data.get("Created")),
        mounts=tuple(_mount_from_api(m) for m in (data.get("Mounts") or []) if isinstance(m, dict)),
    )


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


@contextmanager
def _translate(action: str):
    """Turn docker/requests exceptions into ours, naming what we were doing."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise NotFound(f"{action}: {_explain(exc)}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"{action}: {_explain(exc)}") from exc
        raise EngineError(f"{action}: {_explain(exc)}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineUnavailable(f"{action}: the Docker Engine did not answer ({_short(exc)}).") from exc
    except requests.exceptions.ChunkedEncodingError as exc:  # the connection broke mid-stream
        raise EngineUnavailable(f"{action}: the connection to the Docker Engine broke off ({_short(exc)}).") from exc
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"{action}: {_short(exc)}") from exc


def remove_container_quietly(container_id: str, *, what: str, anonymous_volumes: bool = False) -> None:
    """Remove (kill) a container Cargohold started, in a `finally`: a failure is logged, not
    raised (the job's own error matters more), and the recovery sweep removes it later."""
    try:
        with _translate(f"Removing {what} {container_id[:12]}"):
            api().remove_container(container_id, force=True, v=anonymous_volumes)
    except EngineError:
        logger.warning("could not remove %s %s; the recovery sweep will", what, container_id[:12])


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:297] + "..."


# --- inventory ----------------------------------------------------------------------




def info() -> EngineInfo:
    with _translate("Reading engine information"):
        data = api().info()
        version = api().version()
    plugins = (data.get("Plugins") or {}).get("Volume") or []
    return EngineInfo(
        id=_text(data.get("ID"), 255),
        host_name=_text(data.get("Name"), 255),
        server_version=_text(data.get("ServerVersion"), 64),
        api_version=_text(version.get("ApiVersion"), 16),
        storage_driver=_text(data.get("Driver"), 64),
        docker_root_dir=_text(data.get("DockerRootDir")),
        volume_plugins=tuple(_text(p, 255) for p in plugins),
        containers=int(data.get("Containers") or 0),
        images=int(data.get("Images") or 0),
    )


def list_volumes() -> list[EngineVolume]:
    with _translate("Listing volumes"):
        data = api().volumes()
    return [_volume_from_api(v) for v in (data.get("Volumes") or []) if isinstance(v, dict) and v.get("Name")]


def list_containers() -> list[EngineContainer]:
    with _translate("Listing containers"):
        data = api().containers(all=True)
    return [_container_from_api(c) for c in data if isinstance(c, dict) and c.get("Id")]


RUNNING_STATES = ("running", "restarting", "paused")  # a process may use the volume


def containers_using(volume_name: str, *, running_only: bool = False) -> list[EngineContainer]:
    """The containers on the engine that mount `volume_name` (Cargohold's helpers
    included: callers tell them apart by HELPER_LABEL), by name; `running_only`: those
    whose processes may be using it now."""
    return sorted(
        (c for c in list_containers()
         if any(m.volume_name == volume_name for m in c.mounts) and (not running_only or c.state in RUNNING_STATES)),
        key=lambda c: c.name,
    )


def disk_usage() -> DiskUsage:
    """The engine's `system df`: costly on big hosts (it walks every volume)."""
    with _translate("Measuring disk usage"):
        data = api().df()
    volume_sizes = {}
    for v in data.get("Volumes") or []:
        size = (v.get("UsageData") or {}).get("Size", -1)
        if isinstance(size, int) and size >= 0 and v.get("Name"):
            volume_sizes[refs.from_engine(_text(v["Name"], 255))] = size
    container_sizes = {}
    for c in data.get("Containers") or []:
        size = c.get("SizeRw")
        if isinstance(size, int) and size >= 0 and c.get("Id"):
            container_sizes[c["Id"]] = size
    return DiskUsage(volume_sizes=volume_sizes, container_sizes=container_sizes)


def inspect_volume(name: str) -> EngineVolume:
    with _translate(f"Inspecting volume {name}"):
        return _volume_from_api(api().inspect_volume(refs.engine_name(name)))


def volume_exists(name: str) -> bool:
    try:
        inspect_volume(name)
    except NotFound:
        return False
    return True


def create_volume(*, name: str | None, driver: str, options: dict, labels: dict) -> EngineVolume:
    with _translate(f"Creating volume {name or '(generated name)'}"):
        data = api().create_volume(name=refs.engine_name(name) if name else None, driver=driver, driver_opts=options or None, labels=labels or None)
    return _volume_from_api(data)


def remove_volume(name: str) -> None:
    with _translate(f"Removing volume {name}"):
        api().remove_volume(refs.engine_name(name), force=False)




def container_tmpfs(container_id: str) -> dict[str, str]:
    """`--tmpfs` mounts (HostConfig.Tmpfs: destination -> options); the list call omits them."""
    with _translate(f"Inspecting container {container_id[:12]}"):
        data = api().inspect_container(container_id)
    tmpfs = (data.get("HostConfig") or {}).get("Tmpfs") or {}
    return {_text(k): _text(v) for k, v in tmpfs.items()} if isinstance(tmpfs, dict) else {}


def stop_container(container_id: str, *, timeout: int = 30) -> None:
    with _translate(f"Stopping container {container_id[:12]}"):
        api().stop(container_id, timeout=timeout)


def start_container(container_id: str) -> None:
    with _translate(f"Starting container {container_id[:12]}"):
        api().start(container_id)


def events(*, since: datetime | None = None, types: Iterable[str] = ("volume", "container")) -> Iterator[dict]:
    """Engine events as dicts, until the stream breaks (then raises EngineUnavailable)."""
    with _translate("Reading engine events"):
        stream = api().events(since=since, filters={"type": list(types)}, decode=True)
    try:
        with _translate("Reading engine events"):
            yield from stream
    finally:
        try:
            stream.close()
        except Exception:
            pass


