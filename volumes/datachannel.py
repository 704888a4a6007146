"""The data helper's data channel: which way its bytes cross between the helper and the
worker, the engine's attach stream (dockerd relays every byte) or a FIFO in a private
folder the helper gets bind-mounted when the worker runs beside its engine, probed once
per process and engine (`data_channel`), and those folders. volumes.datahelper runs the
helpers and reads and writes both channels."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time

from django.conf import settings

from volumes.engine import EngineError, EngineUnavailable, _short, _translate, api

logger = logging.getLogger(__name__)

# The data channel: how the data crosses between the helper and the worker.
FIFO = "fifo"  # a FIFO in a private folder bind-mounted into the helper (the worker beside its engine)
ATTACH = "attach"  # the engine's attach stream (stdin/stdout): dockerd relays every byte
CHANNEL_LABELS = {
    FIFO: "FIFO beside the engine (the data bypasses dockerd)",
    ATTACH: "the engine's attach stream (dockerd relays the data)",
}
OUT = "out"  # the helper writes the data, the worker reads it (backups)
IN = "in"  # the worker writes, the helper reads (restores)
CHANNEL_MOUNT = "/chan"
_CHUNK = 1 << 20

_channels: dict[tuple, tuple[str, str]] = {}  # per process and engine: (channel, why), once probed
_channels_lock = threading.Lock()
PROBE_TIMEOUT = 20  # seconds a probe helper may take to open its FIFO
STALE_FOLDER_SECONDS = 24 * 3600


def _grow_pipe(fd: int) -> None:
    # 1 MiB instead of 64 KiB: a quarter of the wake-ups on each side (pipe-max-size's
    # default; an unprivileged worker past its pipe quota keeps the small one).
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _CHUNK)
    except OSError:
        pass


def _channel_root() -> str:
    root = os.path.realpath(str(settings.DATA_CHANNEL_DIR))
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def _channel_folder(job_id: int | None) -> str:
    """A new private folder (0700, unique) for one helper's FIFO."""
    return tempfile.mkdtemp(prefix=f"job{job_id or 0}-", dir=_channel_root())


def _engine_key() -> tuple:
    client = api()
    adapter = getattr(client, "_custom_adapter", None)
    return (os.getpid(), getattr(client, "base_url", ""), getattr(adapter, "socket_path", None),
            str(settings.DATA_CHANNEL_DIR))


def _engine_is_local() -> bool:
    """The engine is reached on a local unix socket (not tcp, ssh or a named pipe)."""
    client = api()
    return getattr(client, "base_url", "") == "http+docker://localhost" and \
        getattr(getattr(client, "_custom_adapter", None), "socket_path", None) is not None


def data_channel(image: str) -> str:
    """FIFO or ATTACH: how a data helper of this engine moves its data (DATA_CHANNEL:
    auto probes once per process and engine whether the FIFO works, and falls back to the
    attach stream, logged; fifo makes a FIFO that does not work an error; attach never
    tries)."""
    mode = settings.DATA_CHANNEL
    if mode == ATTACH:
        return ATTACH
    key = _engine_key()
    with _channels_lock:
        known = _channels.get(key)
        if known is None:
            try:
                known = _channels[key] = _probe(image)
            except EngineUnavailable as exc:
                # The engine did not answer: that says nothing about the channel, so the
                # next helper probes again (an outage must not cost the FIFO for good).
                known = (ATTACH, str(exc))
            if known[0] == FIFO:
                logger.info("data channel: a FIFO beside the engine works here")
            else:
                logger.warning("data channel: a FIFO beside the engine does not work here (%s); using the "
                               "engine's attach stream", known[1])
    channel, why = known
    if channel != FIFO and mode == FIFO:
        raise EngineError(f"DATA_CHANNEL is 'fifo' but a FIFO beside the engine does not work here: {why}")
    return channel


def data_channel_forget() -> None:
    """Probe again on the next helper (tests; a worker whose engine moved)."""
    with _channels_lock:
        _channels.clear()


def _sweep_stale_folders() -> None:
    # Folders of helpers whose worker was killed (SIGKILL, power loss): nothing else
    # removes them; none in use is a day old (helpers have idle timeouts).
    root = _channel_root()
    now = time.time()
    for entry in os.scandir(root):
        try:
            if entry.is_dir(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > \
                    STALE_FOLDER_SECONDS:
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass


def _engine_answers() -> bool:
    try:
        with _translate("Pinging the engine"):
            api().ping()
    except EngineError:
        return False
    return True


def _probe(image: str) -> tuple[str, str]:
    """(FIFO, "") when a helper on this engine writes through a FIFO in a folder this
    process made and the bytes arrive here, else (ATTACH, why). Proves the whole way:
    the engine can bind-mount the folder (same machine, same file system: a worker in a
    container whose folder the host does not have fails), the FIFO connects both sides
    (not across a VM's file sharing), and the helper's confinement (no capabilities)
    may open it."""
    if not _engine_is_local():
        return ATTACH, "the engine is not on a local unix socket"
    from volumes.datahelper import data_helper  # the probe is a data helper itself

    token = f"cargohold-probe-{os.urandom(8).hex()}"
    try:
        _sweep_stale_folders()
        with data_helper(None, image=image, command=lambda target: ["/bin/sh", "-c", f"echo {token} > {target}"],
                         read_only=True, caps=(), purpose="channel-probe", channel=OUT,
                         _channel_mode=FIFO) as helper:
            helper._idle_timeout = PROBE_TIMEOUT
            got = b"".join(helper.output())
            helper.finish(timeout=PROBE_TIMEOUT)
    except EngineUnavailable as exc:
        if not _engine_answers():
            raise  # an outage, not an answer about the channel
        return ATTACH, str(exc)  # e.g. a FIFO the helper's side never connected (a VM's file sharing)
    except (EngineError, OSError) as exc:
        return ATTACH, _short(exc) if isinstance(exc, OSError) else str(exc)
    if got.strip() != token.encode():
        return ATTACH, f"the probe's bytes did not arrive ({len(got)} bytes instead)"
    return FIFO, ""
