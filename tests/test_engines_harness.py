"""The multi-host tests' two extra engines (scripts/engines.sh, tests/engines.py) are real,
separate, usable, and leave the main engine alone."""

import json
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from tests import dockercli
from tests.engines import DATA_HELPER_IMAGE, ExtraEngine, tls_client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["e1", "e2"])
def engine(request) -> ExtraEngine:
    return request.getfixturevalue(f"extra_engine_{request.param}")


def _dockerd_pid(name: str) -> int:
    return int(Path(f"/run/cargohold-engines/{name}.pid").read_text())


def test_each_extra_engine_is_its_own_engine(extra_engine_e1, extra_engine_e2):
    main_id = dockercli.docker("info", "--format", "{{.ID}}")
    infos = {e.name: e.client.info() for e in (extra_engine_e1, extra_engine_e2)}

    assert len({main_id, infos["e1"]["ID"], infos["e2"]["ID"]}) == 3
    assert infos["e1"]["DockerRootDir"] == "/var/lib/cargohold-engines/e1"
    assert infos["e2"]["DockerRootDir"] == "/var/lib/cargohold-engines/e2"
    assert extra_engine_e1.url.startswith("unix://") and not extra_engine_e1.tls
    assert extra_engine_e2.url.startswith("tcp://127.0.0.1:") and extra_engine_e2.tls


def test_extra_engines_run_in_their_own_network_namespace(extra_engine_e1, extra_engine_e2):
    # A dockerd with --bridge=none deletes any docker0 it can see: in the host's namespace
    # that would be the main engine's bridge (scripts/engines.sh, start_dockerd).
    host_netns = os.readlink("/proc/self/ns/net")
    for name in ("e1", "e2"):
        assert os.readlink(f"/proc/{_dockerd_pid(name)}/ns/net") != host_netns, name


def test_extra_engines_have_the_main_engines_helper_images(engine):
    for image in (dockercli.HELPER_IMAGE, DATA_HELPER_IMAGE):
        main_id = dockercli.docker("image", "inspect", "--format", "{{.Id}}", image)
        assert engine.client.images.get(image).id == main_id, image


def test_a_container_without_network_writes_and_reads_a_volume(engine):
    volume = engine.create_volume(script="mkdir -p sub && echo hello > sub/greeting && chmod 640 sub/greeting")

    out = engine.run("cat /data/sub/greeting; ls /sys/class/net", volume=volume)

    assert out.split() == ["hello", "lo"]  # only a loopback: --network none
    assert "./sub/greeting regular file 640 0:0 6 " in engine.tree(volume)
    assert not dockercli.volume_exists(volume)  # on the extra engine, not the main one


def test_the_data_helper_runs_on_the_extra_engines(engine):
    out = engine.client.containers.run(
        DATA_HELPER_IMAGE, ["sh", "-c", "/usr/bin/tar --version | head -n 1; zstd --version"], network_mode="none",
        labels={"cargohold.test": dockercli.RUN_ID}, remove=True, read_only=True, cap_drop=["ALL"],
    ).decode()
    assert "GNU tar" in out and "Zstandard" in out


def _tls_client(base_url: str, **tls):
    import docker.tls

    return tls_client(base_url, docker.tls.TLSConfig(verify=True, **tls), timeout=20)


def test_e2_answers_only_clients_with_a_certificate_from_its_ca(extra_engine_e2, tmp_path):
    import requests.exceptions

    host_port = extra_engine_e2.url.removeprefix("tcp://")
    base_url = f"https://{host_port}"
    ca = str(extra_engine_e2.tls_ca)
    refused = (requests.exceptions.SSLError, requests.exceptions.ConnectionError)

    # The harness's client certificate works (so the refusals below are about the certificate).
    cert = (str(extra_engine_e2.tls_cert), str(extra_engine_e2.tls_key))
    assert _tls_client(base_url, ca_cert=ca, client_cert=cert).ping()

    # No client certificate: the TLS handshake is refused.
    with pytest.raises(refused, match="(?i)certificate|handshake|reset|alert"):
        _tls_client(base_url, ca_cert=ca).ping()

    # A certificate from another CA: refused too.
    with pytest.raises(refused, match="(?i)certificate|handshake|reset|alert"):
        _tls_client(base_url, ca_cert=ca, client_cert=_self_signed(tmp_path)).ping()

    # Plain HTTP gets no API either.
    plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host_port}/_ping"],
                           capture_output=True, text=True, timeout=30)
    assert plain.stdout != "200"


def _self_signed(tmp_path) -> tuple[str, str]:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-from-the-engines-ca")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "rogue-cert.pem", tmp_path / "rogue-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_the_harness_key_files_are_private(extra_engine_e2):
    assert extra_engine_e2.tls_key.stat().st_mode & 0o077 == 0
    assert (extra_engine_e2.tls_key.parent / "ca-key.pem").stat().st_mode & 0o077 == 0
    ssl.create_default_context(cafile=str(extra_engine_e2.tls_ca))  # the CA file is a CA bundle


def test_the_main_engine_still_starts_containers_on_its_default_bridge(extra_engine_e1, extra_engine_e2):
    bridge = json.loads(dockercli.docker("network", "inspect", "bridge"))[0]
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert bridge["Options"].get("com.docker.network.bridge.name", "docker0") == "docker0"

    out = dockercli.docker("run", "--rm", "--label", dockercli.TEST_LABEL, dockercli.HELPER_IMAGE,
                           "sh", "-c", f"ip route; ping -c 1 -W 5 {gateway} >/dev/null && echo reached")

    assert f"default via {gateway}" in out
    assert out.splitlines()[-1] == "reached"
    assert Path("/sys/class/net/docker0").exists()


def test_status_says_both_engines_run(extra_engine_e1, extra_engine_e2):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "engines.sh"), "status"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "e1: running" in proc.stdout and "e2: running" in proc.stdout
