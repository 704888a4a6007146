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


# --- `manage.py check --deploy` under the production settings ------------------------------

PRODUCTION = {
    # What the README's production section says to set (besides the Compose file's own values).
    "DJANGO_SECRET_KEY": "k3Jx9-Qm2vT8pW4zR7yN1bH6cF0aL5sD-gE3uI8oP2wQ9xZ7vB4nM1kJ6hG5fD0s",
    "ALLOWED_HOSTS": "cargohold.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://cargohold.example.com",
    "CARGOHOLD_HTTPS": "1",
    "TRUSTED_PROXY_COUNT": "1",
}


def _web_environment(overrides: dict) -> dict:
    """The `web` service's environment as Compose resolves it from `overrides`."""
    import yaml

    proc = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin", **overrides})
    assert proc.returncode == 0, proc.stderr
    env = yaml.safe_load(proc.stdout)["services"]["web"]["environment"]
    return {k: str(v) for k, v in env.items()} if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def _check_deploy(env: dict, tmp_path) -> subprocess.CompletedProcess:
    import sys

    # The check reads settings and connects to no database; this machine lacks the Postgres
    # driver the image installs, so the database URL alone is swapped for SQLite.
    env = env | {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CARGOHOLD_VAR_DIR": str(tmp_path),
                 "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}"}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_under_the_production_settings(tmp_path):
    env = _web_environment(PRODUCTION)
    assert env["CARGOHOLD_HTTPS"] == "1" and env["DEBUG"] == "0"

    proc = _check_deploy(env, tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


def test_check_deploy_warns_when_https_is_not_switched_on(tmp_path):
    env = _web_environment({k: v for k, v in PRODUCTION.items() if k != "CARGOHOLD_HTTPS"})
    proc = _check_deploy(env, tmp_path)
    assert proc.returncode != 0
    assert "SECURE_SSL_REDIRECT" in proc.stdout + proc.stderr


def test_https_settings_follow_the_switch_and_trust_a_proxy_only_when_told(tmp_path):
    import json
    import sys

    script = ("from django.conf import settings as s; import json; print(json.dumps([s.SECURE_SSL_REDIRECT, "
              "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, "
              "s.TRUSTED_PROXY_COUNT]))")

    def read(extra):
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CARGOHOLD_VAR_DIR": str(tmp_path), **extra}
        proc = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # `make run` on http://127.0.0.1: nothing redirects, cookies work over plain HTTP, no header trusted.
    assert read({}) == [False, False, False, 0, None, 0]
    redirect, session_secure, csrf_secure, hsts, proxy_header, _ = read({"CARGOHOLD_HTTPS": "1"})
    assert redirect and session_secure and csrf_secure and hsts > 0 and proxy_header is None
    *_, proxy_header, proxies = read({"CARGOHOLD_HTTPS": "1", "TRUSTED_PROXY_COUNT": "1"})
    assert proxy_header == ["HTTP_X_FORWARDED_PROTO", "https"] and proxies == 1


# --- docker-compose.host.yml: one more Docker host's worker, on that host -----------------------

HOST_ENV = {
    "CARGOHOLD_HOST_NAME": "build-01",
    "DATABASE_URL": "postgres://cargohold_build01:pw@db.example.com:5432/cargohold?sslmode=verify-full"
                    "&sslrootcert=/etc/cargohold/certs/db-ca.pem",
    "REDIS_URL": "rediss://build01:pw@redis.example.com:6380/0?ssl_cert_reqs=required"
                 "&ssl_ca_certs=/etc/cargohold/certs/redis-ca.pem",
    "CARGOHOLD_ENCRYPTION_KEY": "the-web-tiers-key",
    "DJANGO_SECRET_KEY": "this-machines-own-key",
}


def _host_compose(env: dict) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: run `make setup` (installs Debian's docker-compose)")
    return subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.host.yml"), "config"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env})


def test_host_compose_file_runs_only_host_worker_for_the_host_named_in_the_env():
    import yaml

    proc = _host_compose(HOST_ENV)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]

    assert set(services) == {"host-worker"}  # no web, beat, database or broker on that machine
    svc = services["host-worker"]
    assert svc["command"] == ["python", "manage.py", "host_worker", "--host", "build-01"]
    env = svc["environment"]
    for key in ("DATABASE_URL", "REDIS_URL", "CARGOHOLD_ENCRYPTION_KEY", "DJANGO_SECRET_KEY"):
        assert env[key] == HOST_ENV[key], key
    assert "/var/run/docker.sock:/var/run/docker.sock" in " ".join(map(str, svc["volumes"]))
    assert not svc.get("ports")


def test_host_compose_file_refuses_to_run_without_each_link_configured():
    for missing in HOST_ENV:
        proc = _host_compose({k: v for k, v in HOST_ENV.items() if k != missing})
        assert proc.returncode != 0, missing
        assert missing in proc.stderr, (missing, proc.stderr)


def test_host_worker_command_exists_and_takes_the_host_name():
    import sys

    proc = subprocess.run([sys.executable, "manage.py", "help", "host_worker"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--host" in proc.stdout
