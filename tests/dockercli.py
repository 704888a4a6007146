"""Test helpers that act on the engine as a user would: through the docker CLI.

Everything created here carries the label cargohold.test=<RUN_ID>, so the session's
teardown removes it even when a test fails half-way.
"""

import json
import os
import subprocess
import uuid

RUN_ID = os.environ.get("CARGOHOLD_TEST_RUN_ID") or uuid.uuid4().hex[:8]
TEST_LABEL = f"cargohold.test={RUN_ID}"
HELPER_IMAGE = os.environ.get("CARGOHOLD_HELPER_IMAGE", "busybox:stable")


_touched = False


def touched() -> bool:
    """Did this test make engine objects (so the cleanup has work to do)?"""
    global _touched
    was, _touched = _touched, False
    return was


def docker(*args: str, check: bool = True, input: bytes | None = None, timeout: int = 120) -> str:
    global _touched
    _touched = True
    proc = subprocess.run(["docker", *args], capture_output=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode("utf-8", "replace").strip()


def unique_name(prefix: str = "vol") -> str:
    global _touched
    _touched = True  # Cargohold itself may create engine objects under this name
    return f"chtest-{RUN_ID}-{prefix}-{uuid.uuid4().hex[:6]}"


def create_volume(name: str | None = None, *, labels: dict | None = None, driver_opts: dict | None = None) -> str:
    name = name or unique_name()
    args = ["volume", "create", "--label", TEST_LABEL]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    for k, v in (driver_opts or {}).items():
        args += ["--opt", f"{k}={v}"]
    docker(*args, name)
    return name


def run_container(
    *mounts: str, name: str | None = None, command: str = "sleep 3600", detach: bool = True,
    labels: dict | None = None, start: bool = True,
) -> str:
    """Run (or just create) a helper-image container; mounts are `-v` specs or `--tmpfs` specs."""
    name = name or unique_name("ctr")
    args = ["run" if start else "create"]
    if start and detach:
        args.append("-d")
    args += ["--name", name, "--label", TEST_LABEL, "--network", "none"]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    for spec in mounts:
        if spec.startswith("tmpfs:"):
            args += ["--tmpfs", spec[len("tmpfs:"):]]
        else:
            args += ["-v", spec]
    args += [HELPER_IMAGE, "sh", "-c", command]
    docker(*args)
    return name


def fill_volume(volume: str, script: str) -> None:
    """Run a shell script in a throw-away container with the volume at /data."""
    docker("run", "--rm", "--label", TEST_LABEL, "--network", "none", "-v", f"{volume}:/data",
           HELPER_IMAGE, "sh", "-c", script, timeout=600)


def volume_exists(name: str) -> bool:
    return subprocess.run(["docker", "volume", "inspect", name], capture_output=True).returncode == 0


def container_state(name: str) -> str:
    return json.loads(docker("inspect", name))[0]["State"]["Status"]


def cleanup(run_id: str = RUN_ID) -> None:
    label = f"label=cargohold.test={run_id}"
    containers = docker("ps", "-aq", "--filter", label, check=False).split()
    if containers:
        docker("rm", "-f", "-v", *containers, check=False)
    # Helper containers Cargohold made for our volumes.
    helpers = docker("ps", "-aq", "--filter", "label=cargohold.helper", check=False).split()
    for cid in helpers:
        vol = docker("inspect", "-f", '{{ index .Config.Labels "cargohold.volume" }}', cid, check=False)
        if vol.startswith(f"chtest-{run_id}-"):
            docker("rm", "-f", cid, check=False)
    volumes = set(docker("volume", "ls", "-q", "--filter", label, check=False).split())
    volumes |= {v for v in docker("volume", "ls", "-q", check=False).split() if v.startswith(f"chtest-{run_id}-")}
    if volumes:
        docker("volume", "rm", "-f", *sorted(volumes), check=False)
    global _touched
    _touched = False
