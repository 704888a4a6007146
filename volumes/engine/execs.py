"""Commands in running containers (hooks, dumps of known images) and scratch containers."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass


from project.redact import scrubbed_text

logger = logging.getLogger(__name__)

from volumes.engine.core import *  # noqa: F403  (the adapter's shared pieces)
from volumes.engine.core import _text, _translate

logger = logging.getLogger(__name__)

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
    from docker.utils.socket import frames_iter

    if stdin is not None and over_tls():
        # An exec's input ends by half-closing its connection, which TLS cannot do from
        # Python (SSLSocket.shutdown drops the TLS layer); an exec has no StdinOnce.
        raise EngineError(
            "Feeding a command's input (loading a database dump) does not work over a tcp:// TLS connection to "
            "the engine: run this host's worker beside its engine (a blank address on the Hosts page).")
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
            half_close(raw)
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
    labels = helper_labels(purpose, job_id)
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

