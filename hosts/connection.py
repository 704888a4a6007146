"""How this worker reaches its host's engine: a plain description for the engine adapter
(volumes.engine, the only code that speaks the docker SDK). Worker-side only."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from hosts import refs


@dataclass(frozen=True)
class EngineConnection:
    host_name: str
    url: str  # "" = the docker SDK's own environment (DOCKER_HOST, the local socket)
    ca_pem: str = ""
    cert_pem: str = ""
    key_pem: str = ""

    @property
    def uses_tls(self) -> bool:
        return bool(self.cert_pem and self.key_pem)

    @property
    def where(self) -> str:
        return self.url or "the default socket (/var/run/docker.sock)"


def engine_connection() -> EngineConnection:
    """The default host: DOCKER_HOST as always. Another host: its row (the Admin's url and
    TLS material, the key decrypted here, in the worker, and nowhere else); a blank url is
    the worker's own local engine (DOCKER_HOST of its machine)."""
    name = refs.worker_host_name()
    if name == refs.default_host_name():
        return EngineConnection(host_name=name, url=settings.DOCKER_HOST)
    from hosts.models import Host

    host = Host.objects.filter(name=name).first()
    if host is None:
        from project.errors import CargoholdError

        raise CargoholdError(
            f"This worker serves the host {name}, which is not registered: an Admin adds it on the Hosts page "
            f"(or python manage.py add_host {name} ...)."
        )
    return EngineConnection(
        host_name=name, url=host.url or settings.DOCKER_HOST,
        ca_pem=host.tls_ca_cert, cert_pem=host.tls_client_cert, key_pem=host.client_key() if host.tls_client_key_enc else "",
    )
