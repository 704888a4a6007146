"""The data helper: GNU tar and zstd (and restic) in a short-lived container next to a
volume's data, attached through the engine's API (worker side).

The engine adapter's part for the data helper, beside volumes.engine (which alone
imports docker: this module talks to the engine through its `api()` and `_translate`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings

from volumes.engine import (
    MOUNT_POINT,
    helper_labels,
    EngineError,
    EngineUnavailable,
    NotFound,
    _short,
    _translate,
    api,
    remove_container_quietly,
    inspect_volume,
)

logger = logging.getLogger(__name__)


# GNU tar and zstd live there (helper/Dockerfile, or scripts/setup.sh's host build);
# busybox's sh runs its own applets before PATH, so the commands name them in full.
TAR = "/usr/bin/tar"
ZSTD = "/usr/bin/zstd"
# What reading everything needs: root without capabilities cannot open a file of mode
# 000 owned by someone else. Nothing else: no chown, no writes (the mount is read-only).
READ_CAPS = ("DAC_READ_SEARCH",)
# What extracting with owners, modes, setuid bits, capabilities and ACLs needs.
WRITE_CAPS = ("CHOWN", "FOWNER", "FSETID", "DAC_OVERRIDE", "SETFCAP")
DEVICE_CAPS = ("MKNOD",)
_EXIT_MARK = b"cargohold-exit "


def data_helper_image() -> str | None:
    """The data helper image to run, or None when the engine's archive endpoint must do
    (DATA_PATH "engine", no image configured, or the image is not on this engine);
    DATA_PATH "helper" makes a missing image an error instead."""
    mode = settings.DATA_PATH
    image = settings.DATA_HELPER_IMAGE
    if mode == "engine" or not image:
        if mode == "helper":
            raise EngineError("DATA_PATH is 'helper' but no CARGOHOLD_DATA_HELPER_IMAGE is set.")
        return None
    try:
        with _translate(f"Looking for the data helper image {image}"):
            api().inspect_image(image)
    except NotFound:
        if mode == "helper":
            raise EngineError(
                f"The data helper image {image} is not on this engine (DATA_PATH is 'helper'): run `make setup`."
            ) from None
        logger.info("data helper image %s not on the engine: using the engine's archive endpoint", image)
        return None
    return image


def _raw_socket(sock):
    return getattr(sock, "_sock", sock)  # the SDK's SocketIO wraps the socket itself


class DataHelper:
    """A running data helper container: its stdout as chunks (`output()`), its stdin as a
    file to write (`write()`, `close_input()`), its end (`finish()`). See `data_helper`."""

    def __init__(self, container_id: str, sock, *, idle_timeout: int):
        self.container_id = container_id
        self._sock = _raw_socket(sock)
        self._sock.settimeout(idle_timeout)
        self._handle = sock  # the SDK's wrapper keeps the HTTP response alive
        self._stderr = bytearray()
        self._pending = bytearray()
        self._pos = 0
        self._eof = False

    # stdout and stderr come multiplexed: frames of an 8-byte header (stream, size) + data.
    def _recv(self) -> bool:
        try:
            data = self._sock.recv(1 << 20)
        except OSError as exc:
            raise EngineUnavailable(f"The data helper's output broke off ({_short(exc)}).") from exc
        if not data:
            self._eof = True
            return False
        self._pending += data
        return True

    def _frames(self) -> Iterator[tuple[int, bytes]]:
        # An offset into the buffer, compacted once per receive: deleting each frame from
        # the front would move the whole buffer per frame (dockerd frames are ~32 KiB).
        while True:
            pending = self._pending
            # One copy per frame (bytes of a view), not two (a bytearray slice, then bytes).
            with memoryview(pending) as view:
                while len(pending) - self._pos >= 8:
                    at = self._pos
                    size = int.from_bytes(view[at + 4 : at + 8], "big")
                    if len(pending) - at < 8 + size:
                        break
                    self._pos = at + 8 + size
                    yield pending[at], bytes(view[at + 8 : at + 8 + size])
            del pending[: self._pos]
            self._pos = 0
            if self._eof or not self._recv():
                if self._pending:
                    raise EngineUnavailable("The connection to the data helper broke off mid-stream.")
                return

    def output(self) -> Iterator[bytes]:
        """What the command writes to stdout, chunk by chunk, until it closes it."""
        for kind, payload in self._frames():
            if kind == 1:
                yield payload
            elif kind == 2:
                self._stderr += payload
                del self._stderr[: max(0, len(self._stderr) - 65536)]

    def write(self, data) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise EngineError(f"The data helper stopped reading its input ({_short(exc)}): {self.messages()}") from exc

    def close_input(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def messages(self) -> str:
        text = self._stderr.decode("utf-8", "replace")
        return "\n".join(line for line in text.splitlines() if not line.startswith(_EXIT_MARK.decode()))[-2000:]

    def step_codes(self) -> dict[int, int]:
        """The exit code each step of a `step_script` reported, by its index."""
        codes = {}
        for line in bytes(self._stderr).splitlines():
            fields = line[len(_EXIT_MARK):].split() if line.startswith(_EXIT_MARK) else []
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                codes[int(fields[0])] = int(fields[1])
        return codes

    def finish_output(self) -> None:
        """Read the output to its end (stderr kept, stdout dropped)."""
        for _ in self.output():
            pass

    def finish(self, *, timeout: int = 600) -> int:
        """Read what is left of the output and wait for the command: its exit code."""
        self.finish_output()
        with _translate("Waiting for the data helper"):
            outcome = api().wait(self.container_id, timeout=timeout)
        return outcome.get("StatusCode", -1) if isinstance(outcome, dict) else -1


@contextmanager
def data_helper(volume_name: str | None, *, image: str, command: list[str], read_only: bool, caps: Iterable[str],
                stdin: bool = False, purpose: str = "", job_id: int | None = None,
                repo_path: str | None = None, network: str | None = None, cache_volume: str | None = None,
                hostname: str | None = None, tmpfs_size: str = "16m", pids_limit: int = 64,
                labels: dict | None = None) -> Iterator[DataHelper]:
    """Run `command` in the data helper with the volume at /data, attached (stdout,
    stderr, and stdin if asked) before it starts, so no byte is lost; the container is
    killed and removed when the block ends, whatever ended it (cancel included).

    Confined: no network, read-only root, no new privileges, every capability dropped
    but `caps`, and the volume as its only mount (read-only unless `read_only` is False).

    For restic (repositories.restic) a few additions, each off unless asked: no volume
    (`volume_name` None: init, snapshots, forget, prune, check, ls, dump), a local
    repository's folder at /repo (`repo_path`, read-write), a restic cache volume at
    /cache, a network mode (`network="host"` for an S3 repository: its endpoint may be
    127.0.0.1 on the engine's machine, which only the host's network reaches), a fixed
    `hostname` (restic records it in its locks), a larger /tmp (`tmpfs_size`: restic
    assembles pack files there) and a higher `pids_limit` (Go counts threads as pids).
    """
    binds = {}
    what = f"volume {volume_name}" if volume_name else "a repository"
    if volume_name:
        inspect_volume(volume_name)  # an unknown name would silently create an empty volume
        binds[volume_name] = {"bind": MOUNT_POINT, "mode": "ro" if read_only else "rw"}
    if repo_path:
        binds[repo_path] = {"bind": "/repo", "mode": "rw"}
    if cache_volume:
        binds[cache_volume] = {"bind": "/cache", "mode": "rw"}
    with _translate(f"Creating a data helper for {what}"):
        host_config = api().create_host_config(
            binds=binds, network_mode=network or "none", read_only=True, cap_drop=["ALL"], cap_add=list(caps),
            security_opt=["no-new-privileges"], pids_limit=pids_limit, tmpfs={"/tmp": f"size={tmpfs_size}"},
            # No log driver: with the engine's default (json-file) dockerd also writes every
            # byte of stdout, JSON-escaped, to the container's log file; measured on 1 GiB,
            # that tripled the backup's time (36 s vs 12 s). The attach stream is unaffected.
            log_config={"type": "none", "config": {}},
        )
        created = api().create_container(
            image, command=command, host_config=host_config, user="0:0", working_dir="/",
            labels=helper_labels(purpose or "data", job_id, **{"cargohold.volume": volume_name or ""},
                                 **(labels or {})),
            network_disabled=not network, stdin_open=stdin, detach=False, tty=False,  # stdin closes with ours
            **({"hostname": hostname} if hostname else {}),
            environment={"LC_ALL": "C"},  # names are bytes: no locale recodes them
        )
    container_id = created["Id"]
    try:
        with _translate("Attaching to the data helper"):
            sock = api().attach_socket(container_id, params={"stdin": int(stdin), "stdout": 1, "stderr": 1,
                                                             "stream": 1})
        try:
            with _translate("Starting the data helper"):
                api().start(container_id)
            yield DataHelper(container_id, sock, idle_timeout=max(settings.DOCKER_TIMEOUT, 120))
        finally:
            # shutdown() first: close() alone leaves the descriptor open while the SDK's
            # file wrapper still refers to it, and dockerd, blocked writing output nobody
            # reads, would then hold the container (inspect, kill, rm all hang) for as
            # long as this process lives (a job that failed mid-stream, e.g. S3 gone).
            raw = _raw_socket(sock)
            for end in (lambda: raw.shutdown(socket.SHUT_RDWR), raw.close, getattr(sock, "close", None)):
                try:
                    if end is not None:
                        end()
                except OSError:
                    pass
    finally:
        remove_container_quietly(container_id, what="data helper")


def step_script(*steps: str) -> list[str]:
    """`sh -c` running a pipeline whose every step reports its exit code on stderr
    (`cargohold-exit <step> <code>`), so a failure of tar is told from one of zstd."""
    return ["/bin/sh", "-c", " | ".join(f'{{ {s}; echo "cargohold-exit {i} $?" >&2; }}' for i, s in enumerate(steps))]
