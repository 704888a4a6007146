"""The engine adapter: the only module that imports the docker SDK.

(Over 400 lines on purpose: rule 2 keeps every engine call, and its error translation, here.)

It returns our own dataclasses and turns docker's exceptions into ours, with messages
a person can act on. Only worker-side code (Celery tasks, the event watcher, management
commands) calls it; the web server never does.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import docker
import docker.errors
import requests.exceptions
from django.conf import settings

from project.errors import CargoholdError
from project.redact import scrubbed_text

logger = logging.getLogger(__name__)

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


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
        return ANONYMOUS_LABEL in self.labels or bool(_HEX64.match(self.name))


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
        name=_text(data.get("Name"), 255),
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
    volume_name = _text(data.get("Name"), 255) if kind == "volume" else ""
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


# --- the client ---------------------------------------------------------------------

_clients: dict[int, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def _client() -> docker.DockerClient:
    """One client per process (Celery's prefork children each get their own)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(pid)
        if client is None:
            environment = dict(os.environ)
            if settings.DOCKER_HOST:
                environment["DOCKER_HOST"] = settings.DOCKER_HOST
            where = environment.get("DOCKER_HOST") or "the default socket (/var/run/docker.sock)"
            try:
                client = docker.from_env(environment=environment, timeout=settings.DOCKER_TIMEOUT)
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(
                    f"Cannot reach the Docker Engine at {where}: {_short(exc)}. "
                    "Is dockerd running, and may this user use its socket?"
                ) from exc
            _clients[pid] = client
    return client


def reset_client() -> None:
    with _clients_lock:
        client = _clients.pop(os.getpid(), None)
    if client is not None:
        try:
            client.close()
        except Exception:
            pass


def api():
    return _client().api


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
            volume_sizes[_text(v["Name"], 255)] = size
    container_sizes = {}
    for c in data.get("Containers") or []:
        size = c.get("SizeRw")
        if isinstance(size, int) and size >= 0 and c.get("Id"):
            container_sizes[c["Id"]] = size
    return DiskUsage(volume_sizes=volume_sizes, container_sizes=container_sizes)


def inspect_volume(name: str) -> EngineVolume:
    with _translate(f"Inspecting volume {name}"):
        return _volume_from_api(api().inspect_volume(name))


def volume_exists(name: str) -> bool:
    try:
        inspect_volume(name)
    except NotFound:
        return False
    return True


def create_volume(*, name: str | None, driver: str, options: dict, labels: dict) -> EngineVolume:
    with _translate(f"Creating volume {name or '(generated name)'}"):
        data = api().create_volume(name=name or None, driver=driver, driver_opts=options or None, labels=labels or None)
    return _volume_from_api(data)


def remove_volume(name: str) -> None:
    with _translate(f"Removing volume {name}"):
        api().remove_volume(name, force=False)




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
        return {"type": ["volume"], "volume": [self.volume_name], "event": ["mount"]}

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


# --- helper containers: archives of volumes -----------------------------------------

HELPER_LABEL = "cargohold.helper"
MOUNT_POINT = "/data"


def ensure_helper_image() -> str:
    """The helper image must exist locally; pull it where pulls work."""
    image = settings.HELPER_IMAGE
    with _translate(f"Looking for helper image {image}"):
        try:
            api().inspect_image(image)
            return image
        except docker.errors.ImageNotFound:
            pass
    try:
        with _translate(f"Pulling helper image {image}"):
            repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
            api().pull(repository, tag=tag or "latest")
    except EngineError as exc:
        raise EngineError(
            f"The helper image {image} is not on this host and could not be pulled ({exc}). "
            "Set CARGOHOLD_HELPER_IMAGE to an image that is, or run `make setup` to build one."
        ) from exc
    return image


@contextmanager
def helper_container(
    volume_name: str, *, read_only: bool, command: list[str] | None = None, purpose: str = "", job_id: int | None = None
):
    """A container with the volume at /data, created (not started) and always removed.

    The volume must exist: creating a container with an unknown volume name would
    silently create an empty volume.
    """
    inspect_volume(volume_name)
    image = ensure_helper_image()
    binds = {volume_name: {"bind": MOUNT_POINT, "mode": "ro" if read_only else "rw"}}
    with _translate(f"Creating a helper container for volume {volume_name}"):
        host_config = api().create_host_config(binds=binds, network_mode="none")
        created = api().create_container(
            image,
            command=command or ["true"],
            host_config=host_config,
            labels={
                HELPER_LABEL: purpose or "archive",
                "cargohold.volume": volume_name,
                "cargohold.job": str(job_id or ""),
            },
            network_disabled=True,
        )
    container_id = created["Id"]
    try:
        yield container_id
    finally:
        remove_container_quietly(container_id, what="helper container")


def archive_stream(container_id: str, *, path: str = MOUNT_POINT, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The engine's tar stream of `path` in the container (members under `data/`).

    Unlike the SDK's get_archive, the socket keeps its timeout (an engine that stalls
    mid-stream raises EngineUnavailable after DOCKER_TIMEOUT instead of hanging), and the
    response is closed when the caller stops early (cancel, error): the engine holds the
    container until then, and would refuse to remove the helper.
    """
    client = api()
    with _translate("Reading the volume's archive stream"):
        # identity: requests asks for gzip by default, and the engine would compress
        # the stream itself, on one core, ten times slower than our pipeline.
        response = client._get(client._url("/containers/{0}/archive", container_id), params={"path": path},
                               headers={"Accept-Encoding": "identity"}, stream=True)
        client._raise_for_status(response)
    try:
        with _translate("Reading the volume's archive stream"):
            yield from response.iter_content(chunk_size)
    finally:
        response.close()


def put_archive(container_id: str, data: Iterable[bytes] | bytes, *, path: str = "/") -> None:
    """Send an uncompressed tar stream to the engine, extracted at `path` in the container.

    The engine sniffs the first bytes it receives and runs the decompressor they name (xz,
    bzip2, gzip, zstd) as root: the stream always starts with a header of ours
    (tarstream.LEAD_HEADER, skipped on extraction), so no archive content chooses them.
    """
    from tarstream import LEAD_HEADER

    def stream():
        yield LEAD_HEADER
        if isinstance(data, (bytes, bytearray, memoryview)):
            yield bytes(data)
        else:
            yield from data

    with _translate("Writing the archive into the volume"):
        ok = api().put_archive(container_id, path, stream())
    if not ok:
        raise EngineError("The engine refused the archive.")


def run_helper(
    volume_name: str, command: list[str], *, timeout: int = 600, purpose: str = "", job_id: int | None = None,
    read_only: bool = False,
) -> str:
    """Run `command` in a helper container with the volume mounted at /data (read-write unless asked)."""
    with helper_container(volume_name, read_only=read_only, command=command, purpose=purpose, job_id=job_id) as cid:
        with _translate(f"Running a helper in volume {volume_name}"):
            api().start(cid)
            outcome = api().wait(cid, timeout=timeout)
            logs = api().logs(cid, stdout=True, stderr=True, tail=50).decode("utf-8", "replace")
    code = outcome.get("StatusCode", -1) if isinstance(outcome, dict) else -1
    if code != 0:
        raise EngineError(f"The helper command failed in volume {volume_name} (exit {code}): {logs.strip()[-500:]}")
    return logs




def volume_free_bytes(volume_name: str, *, job_id: int | None = None) -> int | None:
    """The free space of the file system holding the volume, as `df` sees it on the mount
    (the engine's API reports no free space); None when it cannot be learned."""
    try:
        out = run_helper(volume_name, ["df", "-Pk", MOUNT_POINT], timeout=60, purpose="free-space", job_id=job_id,
                         read_only=True)
    except EngineError as exc:
        logger.warning("could not learn the free space of volume %s: %s", volume_name, exc)
        return None
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[-1] == MOUNT_POINT and fields[3].isdigit():
            return int(fields[3]) * 1024
    return None


def remove_job_helpers(*, job_id: int) -> int:
    """Remove the helper containers of one job (a killed backup's, found by recovery)."""
    with _translate("Listing helper containers"):
        found = api().containers(all=True, filters={"label": [HELPER_LABEL, f"cargohold.job={job_id}"]})
    removed = 0
    for c in found:
        try:
            with _translate("Removing a leftover helper container"):
                api().remove_container(c["Id"], force=True)
            removed += 1
        except NotFound:
            pass
    return removed


# --- exec: commands in a running container (hooks, dumps of known images) ----------------

EXEC_OUTPUT_MAX = 64 * 1024  # the tail of an exec's output kept in ExecResult.output
EXEC_KILL_GRACE_SECONDS = 5  # past its timeout, an exec still running is killed from outside


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None: it did not end on its own (killed at its timeout)
    output: str  # the tail of what it printed on stderr (and on stdout unless a sink took it)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def container_user(container_id: str) -> str:
    """The user the container's processes run as (its Config.User; "" for the image's default)."""
    with _translate(f"Inspecting container {container_id[:12]}"):
        data = api().inspect_container(container_id)
    return _text((data.get("Config") or {}).get("User"), 255)


def _exec_create(container_id: str, command: list[str], *, user: str, environment: dict | None, stdin: bool) -> str:
    with _translate(f"Starting a command in container {container_id[:12]}"):
        created = api().exec_create(container_id, command, stdout=True, stderr=True, stdin=stdin, tty=False,
                                    user=user or "", environment=environment or None)
    return created["Id"]


def _exec_exit_code(exec_id: str, *, wait_seconds: float = 5) -> int | None:
    """The exit code of an ended exec (its output stream may close a moment before the
    engine records the end); None if it still runs."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with _translate("Reading a command's exit code"):
            data = api().exec_inspect(exec_id)
        if not data.get("Running"):
            return data.get("ExitCode")
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def exec_has(container_id: str, argv: list[str]) -> bool:
    """Does `argv` run and exit 0 in the container (is a tool such as `timeout` there)?"""
    try:
        result = exec_run(container_id, argv, timeout=30, killers=())
    except EngineError:
        return False
    return result.exit_code == 0


def exec_run(
    container_id: str, command: list[str], *, timeout: float, user: str = "", environment: dict | None = None,
    on_line=None, stdout_sink=None, stdin: Iterable[bytes] | None = None, killers: tuple = ("timeout", "sh"),
) -> ExecResult:
    """Run `command` (an argv, no shell) in the running container, as `user` ("" for the
    container's own), for at most `timeout` seconds.

    Output streams as it comes: each line to `on_line` (stdout too unless `stdout_sink`,
    a callable taking bytes, takes stdout: a dump). `stdin`: chunks fed to the command.
    A command still running at its timeout is killed: inside the container by the
    image's `timeout` (exec'd as `timeout -s KILL`, so it dies even if this worker dies
    first) when the image has it, else from a second exec killing the pid a `sh` wrapper
    noted and the processes under it (`killers` says which of the two to try); the
    result says timed_out. Raises EngineError when the engine refuses the exec itself.
    """
    import socket as socketlib

    from docker.utils.socket import frames_iter

    inside = "timeout" in killers and exec_has(container_id, ["timeout", "-s", "KILL", "5", "true"])
    pid_file = ""
    if inside:
        wrapped = ["timeout", "-s", "KILL", str(max(1, int(timeout))), *command]
    elif "sh" in killers and exec_has(container_id, ["sh", "-c", "true"]):
        # No `timeout` in the image: note the command's pid, to kill its tree from outside.
        pid_file = f"/tmp/.cargohold-exec-{os.urandom(8).hex()}"
        wrapped = ["sh", "-c", 'echo $$ > "$0" 2>/dev/null; exec "$@"', pid_file, *command]
    else:
        wrapped = list(command)
    exec_id = _exec_create(container_id, wrapped, user=user, environment=environment, stdin=stdin is not None)
    with _translate(f"Running a command in container {container_id[:12]}"):
        sock = api().exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(None)  # a quiet command is not a dead engine: the deadline below decides
    tail = bytearray()
    failure: list[BaseException] = []

    def emit(data: bytes, *, to_sink: bool) -> None:
        if to_sink:
            stdout_sink(data)
            return
        tail.extend(data)
        del tail[:-EXEC_OUTPUT_MAX]

    def read() -> None:
        pending = {1: b"", 2: b""}
        try:
            for stream_id, data in frames_iter(sock, False):
                if stdout_sink is not None and stream_id == 1:
                    emit(data, to_sink=True)
                    continue
                emit(data, to_sink=False)
                if on_line is not None:
                    pending[stream_id] += data
                    *lines, pending[stream_id] = pending[stream_id].split(b"\n")
                    for line in lines:
                        on_line(line.decode("utf-8", "replace"))
            for rest in pending.values():
                if rest and on_line is not None:
                    on_line(rest.decode("utf-8", "replace"))
        except BaseException as exc:  # a sink that failed (storage full) ends the exec too
            failure.append(exc)

    def write() -> None:
        try:
            for chunk in stdin:
                raw.sendall(chunk)
            raw.shutdown(socketlib.SHUT_WR)
        except BaseException as exc:
            failure.append(exc)

    reader = threading.Thread(target=read, daemon=True, name=f"exec {exec_id[:12]} output")
    reader.start()
    writer = None
    if stdin is not None:
        writer = threading.Thread(target=write, daemon=True, name=f"exec {exec_id[:12]} input")
        writer.start()
    reader.join(timeout + EXEC_KILL_GRACE_SECONDS if inside else timeout)
    timed_out = reader.is_alive()
    if timed_out:
        _exec_kill(container_id, command, pid_file)
        reader.join(EXEC_KILL_GRACE_SECONDS)
    elif pid_file:
        _exec_quiet(container_id, ["rm", "-f", pid_file])
    try:
        sock.close()
    except Exception:
        pass
    if writer is not None:
        writer.join(EXEC_KILL_GRACE_SECONDS)
    code = _exec_exit_code(exec_id)
    if inside and code == 137 and not timed_out:
        timed_out = True  # `timeout -s KILL` killed it (137 = 128 + SIGKILL)
    if failure and not timed_out:
        raise failure[0]
    return ExecResult(exit_code=None if timed_out else code, output=scrubbed_text(tail.decode("utf-8", "replace")),
                      timed_out=timed_out)


# The process whose pid is in the file "$0", and every process under it (found by their
# parent in /proc: images without `timeout` rarely have pgrep either).
_KILL_TREE = (
    'tree() { for s in /proc/[0-9]*/stat; do read -r pid comm state ppid rest < "$s" 2>/dev/null || continue; '
    '[ "$ppid" = "$1" ] && tree "$pid"; done; kill -KILL "$1" 2>/dev/null; }; '
    'p=$(cat "$0") && tree "$p"; rm -f "$0"'
)


def _exec_quiet(container_id: str, argv: list[str], *, user: str = "") -> int | None:
    """Run a short command of ours in the container, waiting for it; its exit code."""
    try:
        exec_id = _exec_create(container_id, argv, user=user, environment=None, stdin=False)
        with _translate(f"Running a command in container {container_id[:12]}"):
            api().exec_start(exec_id)
        return _exec_exit_code(exec_id)
    except EngineError as exc:
        logger.warning("could not run %s in %s: %s", argv[0], container_id[:12], exc)
        return None


def _exec_kill(container_id: str, command: list[str], pid_file: str) -> None:
    """Kill a command that outlived its timeout (the image had no `timeout`), with what it
    started, from a second exec as root: by the pid it noted, else by `pkill` of its
    command line."""
    if pid_file and _exec_quiet(container_id, ["sh", "-c", _KILL_TREE, pid_file], user="0") == 0:
        return
    if _exec_quiet(container_id, ["pkill", "-KILL", "-x", "-f", " ".join(command)], user="0") != 0:
        logger.warning("could not kill a timed-out command in %s", container_id[:12])


@contextmanager
def scratch_container(image: str, *, command: list[str] | None = None, entrypoint: list[str] | None = None,
                      environment: dict | None = None, tmpfs: dict | None = None, purpose: str = "scratch",
                      job_id: int | None = None):
    """A throw-away container of a local `image` (a drill's scratch database server): no
    network, no volume, no new privileges; labelled as our helper of `job_id`, so a dead
    worker's is found and removed; started here, always removed."""
    labels = {HELPER_LABEL: purpose, "cargohold.job": str(job_id or "")}
    with _translate(f"Creating a scratch container of {image}"):
        host_config = api().create_host_config(network_mode="none", tmpfs=tmpfs or None,
                                               security_opt=["no-new-privileges"])
        created = api().create_container(image, command=command, entrypoint=entrypoint, environment=environment,
                                         host_config=host_config, labels=labels, network_disabled=True)
    container_id = created["Id"]
    try:
        with _translate(f"Starting a scratch container of {image}"):
            api().start(container_id)
        yield container_id
    finally:
        remove_container_quietly(container_id, what="scratch container", anonymous_volumes=True)


def container_running(container_id: str) -> bool:
    with _translate(f"Inspecting container {container_id[:12]}"):
        data = api().inspect_container(container_id)
    return bool((data.get("State") or {}).get("Running"))
