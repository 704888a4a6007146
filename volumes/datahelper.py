"""The data helper: GNU tar and zstd (and restic) in a short-lived container next to a
volume's data, attached through the engine's API (worker side), and its data channel:
the attach stream (dockerd relays every byte), or a FIFO in a private folder the helper
gets bind-mounted when the worker runs beside its engine (`data_channel` probes once per
process and engine which one works).

The engine adapter's part for the data helper, beside volumes.engine (which alone
imports docker: this module talks to the engine through its `api()` and `_translate`).

Which channel a helper gets (the probe, the private folders) is volumes.datachannel's;
the container's life and both channels' reading and writing share one object here
(DataHelper: what the helper says on stderr decides how a FIFO wait ends). Over 450 lines
for that reason: the container's life and its two channels are one state machine; the
next piece to move out is the step-script and exit-code parsing.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings

from hosts import refs

from volumes.engine import (
    MOUNT_POINT,
    helper_labels,
    EngineError,
    EngineUnavailable,
    NotFound,
    _short,
    half_close,
    over_tls,
    recv_some,
    _translate,
    api,
    remove_container_quietly,
    inspect_volume,
)

from volumes.datachannel import (  # noqa: F401  (callers use datahelper.<name>)
    ATTACH,
    CHANNEL_LABELS,
    CHANNEL_MOUNT,
    FIFO,
    IN,
    OUT,
    _CHUNK,
    _channel_folder,
    _grow_pipe,
    data_channel,
    data_channel_forget,
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

_TICK = 0.5  # seconds: how often a wait on the channel looks whether it must end


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
    file to write (`write()`, `close_input()`), its end (`finish()`). See `data_helper`.

    On the FIFO channel (`channel` is FIFO) the data goes through a FIFO in a private
    folder instead (`fifo`: the helper writes it for OUT, reads it for IN) and the attach
    stream carries only stderr (the step codes, tar's messages), drained by a thread."""

    def __init__(self, container_id: str, sock, *, idle_timeout: int, channel: str = "attach",
                 fifo: str | None = None, direction: str | None = None, fifo_fd: int | None = None,
                 input_sock=None):
        self.container_id = container_id
        self.channel = channel
        self._sock = _raw_socket(sock)
        self._handle = sock  # the SDK's wrapper keeps the HTTP response alive
        # Over TLS the input has an attach connection of its own (see data_helper).
        self._input_handle = input_sock
        self._input = _raw_socket(input_sock) if input_sock is not None else self._sock
        self._stderr = bytearray()
        self._pending = bytearray()
        self._pos = 0
        self._eof = False
        self._idle_timeout = idle_timeout
        self._fifo = fifo
        self._direction = direction
        self._fd = fifo_fd  # OUT: our read end, opened before the helper starts; IN: opened on first write
        self._fifo_started = False
        self._aborted = False
        self._attach_done = threading.Event()
        self._drain: threading.Thread | None = None
        # Called on each tick a FIFO wait takes (a job's check_cancelled: a cancel is seen
        # while tar reads a long stretch that compresses to nothing).
        self.on_wait: Callable[[], None] | None = None
        if channel == FIFO:
            # Short ticks: the drain thread waits out a silent tar (no messages for an
            # hour is normal) and notices an abort.
            self._sock.settimeout(_TICK)
            self._drain = threading.Thread(target=self._drain_attach, daemon=True, name="data helper stderr")
        else:
            self._sock.settimeout(idle_timeout)

    def _start(self) -> None:
        if self._drain is not None:
            self._drain.start()

    # stdout and stderr come multiplexed: frames of an 8-byte header (stream, size) + data.
    def _recv(self) -> bool:
        while True:
            try:
                data = recv_some(self._sock, 1 << 20)
                break
            except TimeoutError:
                if self.channel == FIFO and not self._aborted:
                    continue
                raise EngineUnavailable("The data helper's output broke off (timed out).") from None
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

    def _attach_output(self) -> Iterator[bytes]:
        for kind, payload in self._frames():
            if kind == 1:
                yield payload
            elif kind == 2:
                self._stderr += payload
                del self._stderr[: max(0, len(self._stderr) - 65536)]

    def _drain_attach(self) -> None:
        try:
            for _ in self._attach_output():  # the helper's stdout is unused on the FIFO channel
                pass
        except EngineError:
            pass  # the end is told by the FIFO and the exit code
        finally:
            self._attach_done.set()

    def output(self) -> Iterator[bytes]:
        """What the command writes to stdout (on the FIFO channel: to the FIFO), chunk by
        chunk, until it closes it."""
        if self.channel == FIFO:
            yield from self._fifo_output()
        else:
            yield from self._attach_output()

    # --- the FIFO channel -------------------------------------------------------
    def _ended_before_opening(self) -> EngineError:
        words = self.messages().strip()
        return EngineError(
            "The data helper ended before it opened its data channel"
            + (f": {words[-1000:]}" if words else " (it said nothing).")
        )

    def _fifo_wait(self, poller, since: float) -> None:
        """One tick of waiting for the FIFO; raises when waiting must end."""
        if self._aborted:
            raise EngineError("The data channel was closed.")
        if not self._fifo_started and self._attach_done.is_set():
            raise self._ended_before_opening()
        if time.monotonic() - since > self._idle_timeout:
            what = "opened its data channel" if not self._fifo_started else "moved any data"
            raise EngineUnavailable(f"The data helper has not {what} for {self._idle_timeout} s.")
        if self.on_wait is not None:
            self.on_wait()
        poller.poll(_TICK * 1000)

    def _fifo_output(self) -> Iterator[bytes]:
        # Non-blocking read end, opened before the helper started: open() never blocks,
        # and a helper that dies before opening its end is seen (its attach stream ends)
        # instead of waited for. Until a writer came, read() says 0 for "nobody yet" as
        # for "done", so poll decides: Linux reports POLLHUP only after a writer came and went.
        fd = self._fd
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        since = time.monotonic()
        while True:
            if not self._fifo_started:
                if not poller.poll(0):
                    self._fifo_wait(poller, since)
                    continue
                self._fifo_started = True
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                self._fifo_wait(poller, since)
                continue
            if not data:
                return
            since = time.monotonic()
            yield data

    def _open_input(self) -> int:
        # O_NONBLOCK: open() for writing fails (ENXIO) until the helper opened its end,
        # instead of blocking forever if it never does.
        since = time.monotonic()
        while True:
            try:
                fd = os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise EngineError(f"Cannot open the data channel ({_short(exc)}).") from exc
                if self._aborted:
                    raise EngineError("The data channel was closed.") from None
                if self._attach_done.is_set():
                    raise self._ended_before_opening() from None
                if time.monotonic() - since > self._idle_timeout:
                    raise EngineUnavailable(
                        f"The data helper has not opened its data channel for {self._idle_timeout} s."
                    ) from None
                time.sleep(0.02)
                continue
            _grow_pipe(fd)
            self._fifo_started = True
            return fd

    def _fifo_write(self, data) -> None:
        if self._fd is None:
            self._fd = self._open_input()
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        since = time.monotonic()
        with memoryview(data) as view:
            while view:
                try:
                    written = os.write(self._fd, view)
                except BlockingIOError:
                    self._fifo_wait(poller, since)
                    continue
                except OSError as exc:  # EPIPE: the helper closed its end (tar failed)
                    raise EngineError(
                        f"The data helper stopped reading its input ({_short(exc)}): {self.messages()}"
                    ) from exc
                view = view[written:]
                since = time.monotonic()

    def write(self, data) -> None:
        if self.channel == FIFO:
            self._fifo_write(data)
            return
        try:
            self._input.sendall(data)
        except OSError as exc:
            raise EngineError(f"The data helper stopped reading its input ({_short(exc)}): {self.messages()}") from exc

    def close_input(self) -> None:
        if self.channel == FIFO:
            try:
                if self._fd is None:  # nothing was written: the helper still waits to open
                    self._fd = self._open_input()
            except EngineError:
                return  # the helper's exit code tells what happened
            self._close_fd()
            return
        if self._input is not self._sock:
            self._close_input_connection()
            return
        try:
            half_close(self._sock)
        except OSError:
            pass

    def _close_input_connection(self) -> None:
        # The whole connection: dockerd then ends the container's stdin (StdinOnce).
        for end in (lambda: self._input.shutdown(socket.SHUT_RDWR), self._input.close,
                    getattr(self._input_handle, "close", None)):
            try:
                if end is not None:
                    end()
            except OSError:
                pass

    def abort(self) -> None:
        """Stop whatever waits on the channel now (another thread's write included): a
        cancelled or failed job must not wait for a helper that no longer reads."""
        self._aborted = True
        if self.channel != FIFO:
            if self._input is not self._sock:
                self._close_input_connection()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
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

    def finish_output(self, *, timeout: float | None = None) -> None:
        """Read the output to its end (stderr kept, stdout dropped). After abort() the
        connection is gone on purpose: a reader in another thread then just stops (the
        job's own error is the one to report)."""
        try:
            self._finish_output(timeout)
        except EngineUnavailable:
            if not self._aborted:
                raise

    def _finish_output(self, timeout: float | None) -> None:
        if self.channel == FIFO:
            if self._direction == OUT and self._fd is not None and not self._aborted:
                for _ in self._fifo_output():
                    pass
            if self._drain is not None and self._drain.ident is not None:
                self._drain.join(timeout)
            return
        for _ in self._attach_output():
            pass

    def finish(self, *, timeout: int = 600) -> int:
        """Read what is left of the output and wait for the command: its exit code."""
        self.finish_output(timeout=timeout)
        with _translate("Waiting for the data helper"):
            outcome = api().wait(self.container_id, timeout=timeout)
        return outcome.get("StatusCode", -1) if isinstance(outcome, dict) else -1

    def _close(self) -> None:
        self._aborted = True
        self._close_fd()


def _create(image: str, *, what: str, command: list[str], binds: dict, mounts: list, network: str | None,
            caps: Iterable[str], pids_limit: int, tmpfs_size: str, purpose: str, job_id: int | None,
            volume_name: str | None, labels: dict | None, stdin: bool, hostname: str | None) -> str:
    with _translate(f"Creating a data helper for {what}"):
        host_config = api().create_host_config(
            binds=binds, network_mode=network or "none", read_only=True, cap_drop=["ALL"], cap_add=list(caps),
            security_opt=["no-new-privileges"], pids_limit=pids_limit, tmpfs={"/tmp": f"size={tmpfs_size}"},
            **({"mounts": mounts} if mounts else {}),
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
    return created["Id"]


@contextmanager
def data_helper(volume_name: str | None, *, image: str, command: list[str] | Callable[[str | None], list[str]],
                read_only: bool, caps: Iterable[str],
                stdin: bool = False, purpose: str = "", job_id: int | None = None,
                repo_path: str | None = None, network: str | None = None, cache_volume: str | None = None,
                hostname: str | None = None, tmpfs_size: str = "16m", pids_limit: int = 64,
                labels: dict | None = None, channel: str | None = None,
                _channel_mode: str | None = None) -> Iterator[DataHelper]:
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

    The data channel (`channel` OUT: the command's output is the data, IN: its input is):
    `command` is then a function of the path the data goes through in the container, a
    FIFO when the channel works here (`data_channel`: the worker beside its engine), None
    on the attach stream (stdout, or stdin); `helper.channel` says which ran. The FIFO's
    folder is private (0700), made for this helper alone, bind-mounted read-only at /chan
    (a FIFO is written through a read-only mount; nothing can be created there) and
    removed with the helper.
    """
    binds = {}
    mounts = []
    folder = fifo = None
    kind = ATTACH
    what = f"volume {volume_name}" if volume_name else "a repository"
    if volume_name:
        inspect_volume(volume_name)  # an unknown name would silently create an empty volume
        binds[refs.engine_name(volume_name)] = {"bind": MOUNT_POINT, "mode": "ro" if read_only else "rw"}
    if repo_path:
        binds[repo_path] = {"bind": "/repo", "mode": "rw"}
    if cache_volume:
        binds[cache_volume] = {"bind": "/cache", "mode": "rw"}
    if channel is not None:
        kind = _channel_mode or data_channel(image)
        if kind == FIFO:
            folder = _channel_folder(job_id)
            fifo = os.path.join(folder, channel)
            os.mkfifo(fifo, 0o600)
            # Mounts, not Binds: a source missing on the engine's host is an error there,
            # not a folder dockerd creates.
            mounts.append({"Type": "bind", "Source": folder, "Target": CHANNEL_MOUNT, "ReadOnly": True})
        if callable(command):
            command = command(f"{CHANNEL_MOUNT}/{channel}" if kind == FIFO else None)
        if kind == FIFO:
            stdin = False  # the input comes through the FIFO
    try:
        container_id = _create(image, what=what, command=command, binds=binds, mounts=mounts, network=network,
                               caps=caps, pids_limit=pids_limit, tmpfs_size=tmpfs_size, purpose=purpose,
                               job_id=job_id, volume_name=volume_name, labels=labels, stdin=stdin,
                               hostname=hostname)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    read_fd = None
    try:
        if kind == FIFO and channel == OUT:
            # Our end first, non-blocking: the helper's open() then never waits for us,
            # and ours never waits for a helper that died before opening.
            read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            _grow_pipe(read_fd)
        # Over TLS the input gets a connection of its own: a TLS socket cannot be half-closed
        # (Python's SSLSocket.shutdown drops the TLS layer, and the output read after it is
        # garbage), so the end of the input is the end of that connection, which dockerd
        # turns into the end of the container's stdin (StdinOnce: create_container sets it).
        separate_input = stdin and over_tls()
        input_sock = None
        with _translate("Attaching to the data helper"):
            sock = api().attach_socket(container_id, params={"stdin": int(stdin and not separate_input), "stdout": 1,
                                                             "stderr": 1, "stream": 1})
            if separate_input:
                input_sock = api().attach_socket(container_id, params={"stdin": 1, "stdout": 0, "stderr": 0,
                                                                       "stream": 1})
        try:
            with _translate("Starting the data helper"):
                api().start(container_id)
            helper = DataHelper(container_id, sock, idle_timeout=max(settings.DOCKER_TIMEOUT, 120), channel=kind,
                                fifo=fifo, direction=channel, fifo_fd=read_fd, input_sock=input_sock)
            read_fd = None  # the helper's now
            helper._start()
            try:
                yield helper
            finally:
                helper._close()
        finally:
            # shutdown() first: close() alone leaves the descriptor open while the SDK's
            # file wrapper still refers to it, and dockerd, blocked writing output nobody
            # reads, would then hold the container (inspect, kill, rm all hang) for as
            # long as this process lives (a job that failed mid-stream, e.g. S3 gone).
            for handle in (sock, input_sock):
                if handle is None:
                    continue
                raw = _raw_socket(handle)
                for end in (lambda: raw.shutdown(socket.SHUT_RDWR), raw.close, getattr(handle, "close", None)):
                    try:
                        if end is not None:
                            end()
                    except OSError:
                        pass
    finally:
        if read_fd is not None:
            os.close(read_fd)
        remove_container_quietly(container_id, what="data helper")
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def step_script(*steps: str) -> list[str]:
    """`sh -c` running a pipeline whose every step reports its exit code on stderr
    (`cargohold-exit <step> <code>`), so a failure of tar is told from one of zstd."""
    return ["/bin/sh", "-c", " | ".join(f'{{ {s}; echo "cargohold-exit {i} $?" >&2; }}' for i, s in enumerate(steps))]
