"""Registering Docker hosts (Admins only: how a worker reaches an engine reaches the host)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.db import models, transaction

from hosts import refs
from hosts.models import Host
from project.errors import Refused

_SSH = re.compile(r"^ssh://([A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_TCP = re.compile(r"^tcp://[A-Za-z0-9.-]+:[0-9]{1,5}$")
_UNIX = re.compile(r"^unix:///[A-Za-z0-9._/-]+$")


def _check_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    if _UNIX.match(url) or _SSH.match(url):
        return url
    if _TCP.match(url):
        try:
            port = urlsplit(url).port
        except ValueError:
            port = None
        if port is None or not 0 < port < 65536:
            raise Refused("The port of a tcp:// address must be between 1 and 65535.")
        return url
    raise Refused("The address must be blank (the worker's local Docker socket), unix:///path/to/docker.sock, "
                  "tcp://HOST:PORT (with TLS client certificates) or ssh://user@host[:port].")


def _check_tls(ca_pem: str, cert_pem: str, key_pem: str) -> None:
    """Parse what was pasted or read, so a typo is refused here, not in a worker at 3 am;
    the key must belong to the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        raise Refused("The CA certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----).") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise Refused("The client certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----).") from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise Refused("The client key is not an unencrypted PEM private key.") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        raise Refused("The client key does not belong to the client certificate.")


def host_save(*, name: str, url: str = "", ca_pem: str | None = None, cert_pem: str | None = None,
              key_pem: str | None = None, description: str = "", actor=None, actor_name: str = "",
              request=None) -> tuple[Host, bool]:
    """Register or update the host `name`. TLS material given as None keeps what is stored
    (the key is write-only: never shown again); a tcp:// address needs all three.
    The default host (made from DOCKER_HOST) keeps its connection: only its description changes."""
    from accounts.services import audit_record

    name = (name or "").strip()
    if not refs.HOST_NAME.match(name):
        raise Refused(f"A host's name uses {refs.HOST_NAME_RULE} characters.")
    url = _check_url(url)
    with transaction.atomic():
        host, created = Host.objects.select_for_update().get_or_create(name=name)
        if host.is_default and url:
            raise Refused(f"The host {name} is the default one: its worker reaches the engine at DOCKER_HOST.")
        ca = host.tls_ca_cert if ca_pem is None else ca_pem.strip()
        cert = host.tls_client_cert if cert_pem is None else cert_pem.strip()
        has_key = bool(host.tls_client_key_enc) if key_pem is None else bool(key_pem.strip())
        if url.startswith("tcp://"):
            if not (ca and cert and has_key):
                raise Refused("A tcp:// engine is reached only with TLS: give the CA certificate, the client "
                              "certificate and its key (dockerd --tlsverify).")
            if key_pem is not None or cert_pem is not None or ca_pem is not None:
                _check_tls(ca, cert, key_pem.strip() if key_pem is not None else host.client_key())
        elif ca or cert or (key_pem or "").strip():
            raise Refused("TLS certificates are for tcp:// addresses only.")
        host.url, host.tls_ca_cert, host.tls_client_cert = url, ca, cert
        if not url.startswith("tcp://"):
            host.tls_client_key_enc = ""
        elif key_pem is not None:
            host.set_client_key(key_pem.strip())
        host.description = (description or "")[:255]
        host.save()
    audit_record(action="host_register" if created else "host_update", actor=actor, actor_name=actor_name,
                 object_type="host", object_name=name, request=request,
                 params={"url": url, "tls": bool(host.tls_client_key_enc)})
    return host, created


def host_remove_refusal(host: Host) -> str | None:
    """Why `host` cannot be removed now (None: it can). Its worker must be stopped first,
    so nothing writes its rows again while they go, and nothing may be running on it."""
    from hosts.models import Transfer
    from jobs.models import Job

    if host.is_default:
        return f"The host {host.name} is the default one (the engine at DOCKER_HOST): it cannot be removed."
    if host.online:
        return (f"The worker of {host.name} is still running (last heard {host.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC): "
                "stop it first, then remove the host.")
    if Job.objects.filter(host=host.name, status__in=Job.ACTIVE).exists():
        return f"Jobs for {host.name} are still queued or running: cancel them or let them end first."
    prefix = f"{host.name}{refs.SEP}"
    if Transfer.objects.filter(ended_at__isnull=True).filter(
            models.Q(source_ref__startswith=prefix) | models.Q(target_ref__startswith=prefix)).exists():
        return f"A transfer from or to {host.name} is under way: let it end first."
    return None


def host_remove(*, name: str, actor=None, actor_name: str = "", request=None) -> dict:
    """Forget a host: its row and its mirror (volumes, containers, mounts, engine status).
    Nothing on the engine is touched, and its backups stay (listed under their volume
    references, restorable onto another host). Registering the name again starts afresh."""
    from accounts.services import audit_record
    from volumes.models import Container, Volume

    with transaction.atomic():
        host = Host.objects.select_for_update().filter(name=name).first()
        if host is None:
            raise Refused(f"No host named {name!r} is registered.")
        if problem := host_remove_refusal(host):
            raise Refused(problem)
        counts = {"volumes": Volume.objects.filter(host=host).count(),
                  "containers": Container.objects.filter(host=host).count()}
        Container.objects.filter(host=host).delete()  # their mounts with them
        Volume.objects.filter(host=host).delete()
        host.delete()  # its engine status with it
    audit_record(action="host_remove", actor=actor, actor_name=actor_name, object_type="host", object_name=name,
                 request=request, params=counts)
    return counts
