"""Two extra real Docker Engines for the multi-host tests: fixtures `extra_engine_e1` and
`extra_engine_e2`.

scripts/engines.sh starts them (`make test` does, before pytest, and stops them after) and
writes var/engines/env; the fixtures read it (or the same variables from the environment).
Without it they FAIL with what to run: `make test` always starts them, so a missing engine is
a broken harness, not a reason to skip.

e1 answers on a unix socket; e2 on tcp://127.0.0.1:PORT with TLS client certificates (the
fixture's SDK client goes through TLS, as a Host row with that URL would). Objects the tests
make there carry the label cargohold.test=<RUN_ID> (as tests/dockercli.py does on the main
engine) and are removed after every test that asked for an extra engine, pass or fail, and
at the end of the session; so are the helper containers this run's Cargohold started there
(cargohold.install=test-<RUN_ID>) and volumes named chtest-<RUN_ID>-*.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import dockercli
from tests.envsetup import ROOT

ENV_FILE = ROOT / "var" / "engines" / "env"
DATA_HELPER_IMAGE = os.environ.get("CARGOHOLD_DATA_HELPER_IMAGE", "cargohold-data-helper:current")
# A listing of every file under /data with its type, mode, owner, size and SHA-256: equal
# listings on two engines mean the same tree (busybox's find, stat and sha256sum).
TREE_SCRIPT = (
    "cd /data && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do "
    "if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then s=$(sha256sum < \"$p\" | cut -d' ' -f1); else s=-; fi; "
    "echo \"$p $(stat -c '%F %a %u:%g %s' \"$p\") $s\"; done"
)


def read_env() -> dict[str, str]:
    """The harness's variables: var/engines/env, with the process environment winning."""
    values: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("CARGOHOLD_TEST_ENGINE_"):
                values[key.strip()] = value.strip()
    values.update({k: v for k, v in os.environ.items() if k.startswith("CARGOHOLD_TEST_ENGINE_")})
    return values


@dataclass
class ExtraEngine:
    name: str  # "e1", "e2"
    url: str  # what a Host row's url holds: unix:///... or tcp://127.0.0.1:PORT
    tls_ca: Path | None
    tls_cert: Path | None
    tls_key: Path | None
    client: object = field(repr=False)  # docker.DockerClient, for the test's own set-up only

    @property
    def tls(self) -> bool:
        return self.tls_key is not None

    def host_fields(self) -> dict[str, str | None]:
        """url, ca_pem, cert_pem, key_pem as hosts.services.host_save takes them."""
        def read(path: Path | None) -> str | None:
            return path.read_text() if path else None

        return {"url": self.url, "ca_pem": read(self.tls_ca), "cert_pem": read(self.tls_cert),
                "key_pem": read(self.tls_key)}

    # --- the test's own set-up, labelled for the cleanup -------------------------------

    def create_volume(self, name: str | None = None, *, labels: dict | None = None, script: str = "") -> str:
        """A volume named chtest-<RUN_ID>-..., filled by `script` (run in /data) if given."""
        name = name or dockercli.unique_name(self.name)
        self.client.volumes.create(name=name, labels={"cargohold.test": dockercli.RUN_ID, **(labels or {})})
        if script:
            self.run(script, volume=name)
        return name

    def run(self, script: str, *, volume: str | None = None, read_only: bool = False) -> str:
        """Run a shell script in a throw-away helper-image container (no network), in the
        volume at /data; return its output. A non-zero exit raises docker.errors.ContainerError."""
        volumes = {volume: {"bind": "/data", "mode": "ro" if read_only else "rw"}} if volume else {}
        out = self.client.containers.run(
            dockercli.HELPER_IMAGE, ["sh", "-c", script], volumes=volumes, network_mode="none",
            labels={"cargohold.test": dockercli.RUN_ID}, remove=True, stdout=True, stderr=True,
            working_dir="/data" if volume else "/",
            name=f"chtest-{dockercli.RUN_ID}-run-{uuid.uuid4().hex[:6]}",
        )
        return out.decode("utf-8", "replace")

    def tree(self, volume: str) -> str:
        """TREE_SCRIPT's listing of the volume (compare two engines' copies with ==)."""
        return self.run(TREE_SCRIPT, volume=volume, read_only=True)

    def volume_exists(self, name: str) -> bool:
        import docker.errors

        try:
            self.client.volumes.get(name)
            return True
        except docker.errors.NotFound:
            return False

    def cleanup(self, run_id: str = dockercli.RUN_ID) -> None:
        import docker.errors

        install = os.environ.get("CARGOHOLD_INSTALL_ID", f"test-{run_id}")
        c = self.client
        # The low-level list: the SDK's containers.list() inspects each one, and a container
        # removed meanwhile (a --rm run ending) made it raise NotFound.
        ids = {x["Id"] for x in c.api.containers(all=True, filters={"label": f"cargohold.test={run_id}"})}
        ids |= {x["Id"] for x in c.api.containers(all=True, filters={"label": f"cargohold.install={install}"})}
        ids |= {x["Id"] for x in c.api.containers(all=True)
                if any(n.lstrip("/").startswith(f"chtest-{run_id}-") for n in x.get("Names") or [])}
        for cid in ids:
            try:
                c.api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                pass
        names = {v.name for v in c.volumes.list(filters={"label": f"cargohold.test={run_id}"})}
        names |= {v.name for v in c.volumes.list() if v.name.startswith(f"chtest-{run_id}-")}
        for name in sorted(names):
            try:
                c.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass


def _missing(what: str) -> None:
    pytest.fail(
        f"The extra Docker Engines of the multi-host tests are not running ({what}). "
        "`make test` starts them; to run pytest by hand, first run: sudo bash scripts/engines.sh start "
        "(writes var/engines/env; scripts/engines.sh stop when done).",
        pytrace=False,
    )


def connect(name: str) -> ExtraEngine:
    import docker
    import docker.tls

    env = read_env()
    key = f"CARGOHOLD_TEST_ENGINE_{name.upper()}"
    url = env.get(key)
    if not url:
        _missing(f"no {key} in {ENV_FILE} or the environment")
    paths = {part: env.get(f"{key}_{part}") for part in ("CA", "CERT", "KEY")}
    if url.startswith("tcp://"):
        if not all(paths.values()):
            _missing(f"{url} needs {key}_CA, {key}_CERT and {key}_KEY")
        tls = docker.tls.TLSConfig(client_cert=(paths["CERT"], paths["KEY"]), ca_cert=paths["CA"], verify=True)
        client = tls_client(url.replace("tcp://", "https://", 1), tls)
    else:
        client = docker.DockerClient(base_url=url, timeout=60)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 (what failed goes into the message)
        _missing(f"{name} at {url} does not answer: {exc}")
    as_path = {part: Path(value) if value else None for part, value in paths.items()}
    return ExtraEngine(name=name, url=url, tls_ca=as_path["CA"], tls_cert=as_path["CERT"],
                       tls_key=as_path["KEY"], client=client)


def tls_client(base_url: str, tls, timeout: int = 60):
    """The product's own TLS client (volumes.engine.client.tls_client): it trusts the
    TLSConfig's CA and nothing from REQUESTS_CA_BUNDLE, as a host's worker does."""
    from volumes.engine.client import tls_client as engine_tls_client

    return engine_tls_client(base_url, tls, timeout=timeout)


_connected: dict[str, ExtraEngine] = {}


def _session_engine(name: str):
    engine = connect(name)
    _connected[name] = engine
    yield engine
    engine.cleanup()
    _connected.pop(name, None)
    engine.client.close()


@pytest.fixture(scope="session")
def extra_engine_e1():
    """The extra engine e1 (unix socket)."""
    yield from _session_engine("e1")


@pytest.fixture(scope="session")
def extra_engine_e2():
    """The extra engine e2 (tcp://127.0.0.1:PORT, TLS client certificates)."""
    yield from _session_engine("e2")


@pytest.fixture
def e1_over_ssh(extra_engine_e1, monkeypatch) -> str:
    """e1 again, as an ssh:// host would reach it: the harness's sshd forces its one key to
    `docker system dial-stdio` on e1's socket. PATH (this process's and the workers' it
    starts) gets the harness's `ssh`, which uses that key and known_hosts (ssh -F), nothing
    of ~/.ssh. Returns the host URL (ssh://root@127.0.0.1:PORT)."""
    env = read_env()
    url, path = env.get("CARGOHOLD_TEST_ENGINE_E1_SSH"), env.get("CARGOHOLD_TEST_ENGINE_E1_SSH_PATH")
    if not url or not path:
        _missing("no CARGOHOLD_TEST_ENGINE_E1_SSH / _SSH_PATH: the harness's sshd")
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    return url


@pytest.fixture(autouse=True)
def _extra_engines_cleanup(request):
    """After every test that asked for an extra engine, remove this run's objects on it."""
    yield
    for name in ("e1", "e2"):
        if f"extra_engine_{name}" in request.fixturenames and name in _connected:
            _connected[name].cleanup()
