"""The engine adapter's client: one docker SDK client per process for the host this
worker serves (hosts.connection says how to reach it: the SDK's environment for a local
socket, TLS client certificates for tcp://, the worker's ssh for ssh://)."""

from __future__ import annotations

import os
import socket
import threading

import docker
import docker.errors
import docker.tls
from django.conf import settings

_clients: dict[int, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def _client() -> docker.DockerClient:
    """One client per process (Celery's prefork children each get their own)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(pid)
        if client is None:
            from hosts.connection import engine_connection
            from volumes.engine.core import EngineUnavailable, _short

            conn = engine_connection()
            try:
                client = _connect(conn)
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(
                    f"Cannot reach the Docker Engine of the host {conn.host_name} at {conn.where}: {_short(exc)}. "
                    "Is dockerd running, and may this user use its socket?"
                ) from exc
            _clients[pid] = client
    return client


def _connect(conn) -> docker.DockerClient:
    """A client for the host's engine: the SDK's environment for a local socket; for
    tcp:// the Admin's TLS client certificate, verified against their CA (the PEMs live in
    memory-only files, never on disk); ssh:// through the worker's own `ssh` and keys."""
    if conn.url.startswith("ssh://"):
        return docker.DockerClient(base_url=conn.url, use_ssh_client=True, timeout=settings.DOCKER_TIMEOUT)
    if conn.uses_tls:
        tls = docker.tls.TLSConfig(
            client_cert=(_memory_file("cert", conn.cert_pem), _memory_file("key", conn.key_pem)),
            ca_cert=_memory_file("ca", conn.ca_pem) if conn.ca_pem else None, verify=True,
        )
        return tls_client(conn.url.replace("tcp://", "https://", 1), tls)
    environment = dict(os.environ)
    if conn.url:
        environment["DOCKER_HOST"] = conn.url
    return docker.from_env(environment=environment, timeout=settings.DOCKER_TIMEOUT)


def tls_client(base_url: str, tls, timeout: int | None = None) -> docker.DockerClient:
    """requests would let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the host's CA (then the
    engine's certificate "has no known issuer"): the client trusts the Admin's CA and nothing
    from the environment. The SDK asks the API version while it is being made, before that
    could be set, so it is asked first with the oldest version the SDK speaks."""
    def make(version: str) -> docker.DockerClient:
        client = docker.DockerClient(base_url=base_url, tls=tls, timeout=timeout or settings.DOCKER_TIMEOUT,
                                     version=version)
        client.api.trust_env = False
        return client

    probe = make("1.24")
    try:
        version = probe.version(api_version=False)["ApiVersion"]
    finally:
        probe.close()
    return make(version)


_memory_files: list[int] = []


def _memory_file(what: str, text: str) -> str:
    """A path to `text` that exists only in this process's memory (memfd): OpenSSL reads
    certificates and keys from paths, and a decrypted key must not touch the disk."""
    fd = os.memfd_create(f"cargohold-tls-{what}", os.MFD_CLOEXEC)
    os.write(fd, text.encode())
    _memory_files.append(fd)  # kept open: the SDK re-reads them for every new connection
    return f"/proc/self/fd/{fd}"


def reset_client() -> None:
    with _clients_lock:
        client = _clients.pop(os.getpid(), None)
    if client is not None:
        try:
            client.close()
        except Exception:
            pass


def api():
    return _client().api


# --- raw attach/exec sockets: what differs by transport ----------------------------------------
# Over ssh:// (the SDK's use_ssh_client) an attach or exec "socket" is the SDK's SSHSocket: a
# pipe to the worker's `ssh`, running `docker system dial-stdio` on the far side. Its recv()
# reads the pipe until it holds n bytes (a 1 MiB read waits for a whole MiB), and shutdown()
# fails (it is no connected socket), so the end of our input never reached the helper.


def _ssh_pipe(sock):
    proc = getattr(sock, "proc", None)
    return proc if proc is not None and getattr(proc, "stdin", None) is not None else None


def recv_some(sock, size: int) -> bytes:
    """What has arrived, up to `size` bytes (b"": the end)."""
    proc = _ssh_pipe(sock)
    if proc is not None:
        return proc.stdout.read1(size)  # no timeout: the worker's ssh (ServerAliveInterval) ends a dead link
    return sock.recv(size)


def half_close(sock) -> None:
    """End what we send, keep reading. Over ssh: close the pipe to `ssh`, which sends EOF;
    dial-stdio then half-closes its connection to dockerd, which ends the container's stdin."""
    proc = _ssh_pipe(sock)
    if proc is not None:
        if not proc.stdin.closed:
            proc.stdin.close()
        return
    sock.shutdown(socket.SHUT_WR)


def over_tls() -> bool:
    """Whether this worker reaches its engine over TLS (tcp://): a TLS socket cannot be
    half-closed from Python, so whatever ends an input by a half-close must do otherwise."""
    return str(getattr(api(), "base_url", "")).startswith("https://")
