"""Short-lived helper containers that read and write a volume (archives, free space)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import docker
import docker.errors
from django.conf import settings


logger = logging.getLogger(__name__)

from hosts import refs
from volumes.engine.core import *  # noqa: F403  (the adapter's shared pieces)
from volumes.engine.core import _translate

logger = logging.getLogger(__name__)

# --- helper containers: archives of volumes -----------------------------------------



def ensure_helper_image() -> str:
    """The helper image must exist locally; pull it where pulls work."""
    image = settings.HELPER_IMAGE
    with _translate(f"Looking for helper image {image}"):
        try:
            api().inspect_image(image)
            return image
        except docker.errors.ImageNotFound:
            pass
    try:
        with _translate(f"Pulling helper image {image}"):
            repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
            api().pull(repository, tag=tag or "latest")
    except EngineError as exc:
        raise EngineError(
            f"The helper image {image} is not on this host and could not be pulled ({exc}). "
            "Set CARGOHOLD_HELPER_IMAGE to an image that is, or run `make setup` to build one."
        ) from exc
    return image


@contextmanager
def helper_container(
    volume_name: str, *, read_only: bool, command: list[str] | None = None, purpose: str = "", job_id: int | None = None
):
    """A container with the volume at /data, created (not started) and always removed.

    The volume must exist: creating a container with an unknown volume name would
    silently create an empty volume.
    """
    inspect_volume(volume_name)
    image = ensure_helper_image()
    binds = {refs.engine_name(volume_name): {"bind": MOUNT_POINT, "mode": "ro" if read_only else "rw"}}
    with _translate(f"Creating a helper container for volume {volume_name}"):
        host_config = api().create_host_config(binds=binds, network_mode="none")
        created = api().create_container(
            image,
            command=command or ["true"],
            host_config=host_config,
            labels=helper_labels(purpose or "archive", job_id, **{"cargohold.volume": volume_name}),
            network_disabled=True,
        )
    container_id = created["Id"]
    try:
        yield container_id
    finally:
        remove_container_quietly(container_id, what="helper container")


def archive_stream(container_id: str, *, path: str = MOUNT_POINT, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The engine's tar stream of `path` in the container (members under `data/`).

    Unlike the SDK's get_archive, the socket keeps its timeout (an engine that stalls
    mid-stream raises EngineUnavailable after DOCKER_TIMEOUT instead of hanging), and the
    response is closed when the caller stops early (cancel, error): the engine holds the
    container until then, and would refuse to remove the helper.
    """
    client = api()
    with _translate("Reading the volume's archive stream"):
        # identity: requests asks for gzip by default, and the engine would compress
        # the stream itself, on one core, ten times slower than our pipeline.
        response = client._get(client._url("/containers/{0}/archive", container_id), params={"path": path},
                               headers={"Accept-Encoding": "identity"}, stream=True)
        client._raise_for_status(response)
    try:
        with _translate("Reading the volume's archive stream"):
            yield from response.iter_content(chunk_size)
    finally:
        response.close()


def put_archive(container_id: str, data: Iterable[bytes] | bytes, *, path: str = "/") -> None:
    """Send an uncompressed tar stream to the engine, extracted at `path` in the container.

    The engine sniffs the first bytes it receives and runs the decompressor they name (xz,
    bzip2, gzip, zstd) as root: the stream always starts with a header of ours
    (tarstream.LEAD_HEADER, skipped on extraction), so no archive content chooses them.
    """
    from tarstream import LEAD_HEADER

    def stream():
        yield LEAD_HEADER
        if isinstance(data, (bytes, bytearray, memoryview)):
            yield bytes(data)
        else:
            yield from data

    with _translate("Writing the archive into the volume"):
        ok = api().put_archive(container_id, path, stream())
    if not ok:
        raise EngineError("The engine refused the archive.")


def run_helper(
    volume_name: str, command: list[str], *, timeout: int = 600, purpose: str = "", job_id: int | None = None,
    read_only: bool = False,
) -> str:
    """Run `command` in a helper container with the volume mounted at /data (read-write unless asked)."""
    with helper_container(volume_name, read_only=read_only, command=command, purpose=purpose, job_id=job_id) as cid:
        with _translate(f"Running a helper in volume {volume_name}"):
            api().start(cid)
            outcome = api().wait(cid, timeout=timeout)
            logs = api().logs(cid, stdout=True, stderr=True, tail=50).decode("utf-8", "replace")
    code = outcome.get("StatusCode", -1) if isinstance(outcome, dict) else -1
    if code != 0:
        raise EngineError(f"The helper command failed in volume {volume_name} (exit {code}): {logs.strip()[-500:]}")
    return logs




def volume_free_bytes(volume_name: str, *, job_id: int | None = None) -> int | None:
    """The free space of the file system holding the volume, as `df` sees it on the mount
    (the engine's API reports no free space); None when it cannot be learned."""
    try:
        out = run_helper(volume_name, ["df", "-Pk", MOUNT_POINT], timeout=60, purpose="free-space", job_id=job_id,
                         read_only=True)
    except EngineError as exc:
        logger.warning("could not learn the free space of volume %s: %s", volume_name, exc)
        return None
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[-1] == MOUNT_POINT and fields[3].isdigit():
            return int(fields[3]) * 1024
    return None


def remove_job_helpers(*, job_id: int) -> int:
    """Remove the helper containers of one job (a killed backup's, found by recovery)."""
    with _translate("Listing helper containers"):
        found = api().containers(all=True, filters={"label": [
            HELPER_LABEL, f"{INSTALL_LABEL}={settings.INSTALL_ID}", f"cargohold.job={job_id}"]})
    removed = 0
    for c in found:
        try:
            with _translate("Removing a leftover helper container"):
                api().remove_container(c["Id"], force=True)
            removed += 1
        except NotFound:
            pass
    return removed


