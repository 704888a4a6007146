"""A Unix-socket proxy in front of the Docker Engine, to make the engine slow or vanish.

Point DOCKER_HOST at `proxy.url`: requests pass through unchanged until the test
throttles the engine's answers (a slow disk, a slow network) or breaks off the
connections that are streaming (the engine restarted, the network died).
"""

from __future__ import annotations

import os
import socket
import threading
import time

ENGINE_SOCKET = "/var/run/docker.sock"


class EngineProxy:
    def __init__(self, path: str, *, upstream: str = ENGINE_SOCKET):
        self.path = path
        self.upstream = upstream
        self.bytes_per_second: float | None = None  # throttle the engine's answers
        self.break_after: int | None = None  # cut a connection after it carried this many bytes
        self.broken = threading.Event()
        # The first bytes each connection sent to the engine (requests and their bodies), to
        # see what Cargohold sends: set `record` before the requests of interest.
        self.record = False
        self.record_limit = 256 * 1024
        self.sent: list[bytearray] = []
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self._server.bind(path)
        self._server.listen(32)
        self._server.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> "EngineProxy":
        self._spawn(self._accept_loop)
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for s in self._sockets:
                _close(s)
        _close(self._server)
        for t in self._threads:
            t.join(timeout=5)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.upstream)
            with self._lock:
                self._sockets += [client, engine]
            recorded = None
            if self.record:
                recorded = bytearray()
                with self._lock:
                    self.sent.append(recorded)
            self._spawn(self._pump, client, engine, False, recorded)
            self._spawn(self._pump, engine, client, True)

    def archive_uploads(self) -> list[bytes]:
        """The (de-chunked) first bytes of every PUT .../archive body the engine received."""
        with self._lock:
            raw = [bytes(r) for r in self.sent]
        bodies = []
        for data in raw:
            while b"PUT " in data:
                data = data[data.index(b"PUT "):]
                head, _, rest = data.partition(b"\r\n\r\n")
                if b"/archive" not in head.split(b"\r\n", 1)[0]:
                    data = rest
                    continue
                if b"chunked" in head.lower():
                    body = bytearray()
                    while rest:
                        line, _, rest = rest.partition(b"\r\n")
                        size = int(line.split(b";")[0] or b"0", 16)
                        if not size:
                            break
                        body += rest[:size]
                        rest = rest[size + 2:]
                    bodies.append(bytes(body))
                else:
                    bodies.append(rest)
                break
        return bodies

    def _pump(self, src: socket.socket, dst: socket.socket, from_engine: bool, recorded=None) -> None:
        carried = 0
        try:
            while not self._stop.is_set():
                data = src.recv(64 * 1024)
                if not data:
                    break
                if from_engine and self.bytes_per_second:
                    time.sleep(len(data) / self.bytes_per_second)
                if recorded is not None and len(recorded) < self.record_limit:
                    recorded += data[: self.record_limit - len(recorded)]
                dst.sendall(data)
                carried += len(data)
                if from_engine and self.break_after is not None and carried > self.break_after:
                    self.broken.set()  # the connection ends mid-answer, as with a dying daemon
                    break
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def slow_engine_worker(worker_factory, monkeypatch, tmp_path, *, name: str, concurrency: int = 1,
                       bytes_per_second: int = 2_000_000):
    """A worker on a queue of its own that reads the engine through a slow link, so a
    backup it runs is still streaming when the test acts (kills it, re-sends its message).
    Returns (worker, queue, proxy); the caller closes the proxy."""
    import uuid

    queue = f"{os.environ['CELERY_QUEUE']}-{name}-{uuid.uuid4().hex[:6]}"
    proxy = EngineProxy(str(tmp_path / "engine.sock")).start()
    proxy.bytes_per_second = bytes_per_second
    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    # The attach stream, through the proxy: the FIFO beside the engine would carry the data
    # past it, and the backup would end before the test acts.
    monkeypatch.setenv("CARGOHOLD_DATA_CHANNEL", "attach")
    worker = worker_factory(concurrency=concurrency, name=name, queue=queue)
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.delenv("CARGOHOLD_DATA_CHANNEL")
    return worker, queue, proxy


def backup_streaming(*, volume_name: str, queue: str, more_than: int = 2_000_000):
    """Start a backup (containers stopped) on `queue` and wait until it streams."""
    from django.db import transaction

    from backups.services import backup_start
    from jobs.models import Job
    from tests.conftest import wait_for

    with transaction.atomic():
        backup = backup_start(volume_name=volume_name, stop_containers=True, queue=queue)
    wait_for(lambda: Job.objects.get(pk=backup.job_id).progress_done > more_than, timeout=60,
             message="the backup to be streaming")
    return backup
