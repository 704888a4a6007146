"""The deployment files: Compose validates, only the worker side gets the Docker socket."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _compose_config() -> str:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: run `make setup` (installs Debian's docker-compose)")
    proc = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "DJANGO_SECRET_KEY": "test"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_compose_file_validates_with_docker_compose():
    _compose_config()


def test_only_worker_side_services_mount_the_docker_socket():
    import yaml

    services = yaml.safe_load(_compose_config())["services"]
    with_socket = {
        name for name, svc in services.items()
        if any("docker.sock" in str(v) for v in svc.get("volumes", []))
    }
    assert with_socket == {"worker", "watcher"}
    assert {"web", "worker", "beat", "redis"} <= set(services)


def test_compose_refuses_to_run_without_a_secret_key():
    proc = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY" in proc.stderr
