"""`python manage.py add_host NAME --url ...`: register a Docker host (Admins' CLI, like the
Hosts page). TLS material is read from files; the client key is stored encrypted."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from project.errors import CargoholdError


class Command(BaseCommand):
    help = "Register (or update) a Docker host that a worker started with host_worker --host NAME serves."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--url", default="", help="blank: the worker's local socket; tcp://HOST:PORT (TLS); ssh://user@host")
        parser.add_argument("--tls-ca", help="file with the CA certificate (PEM) that signed the engine's")
        parser.add_argument("--tls-cert", help="file with the client certificate (PEM)")
        parser.add_argument("--tls-key", help="file with the client key (PEM; stored encrypted)")
        parser.add_argument("--description", default="")

    def handle(self, *args, **options):
        from hosts.services import host_save

        def read(option):
            path = options.get(option)
            if not path:
                return None
            try:
                return Path(path).read_text()
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None

        try:
            host, created = host_save(name=options["name"], url=options["url"], ca_pem=read("tls_ca"),
                                      cert_pem=read("tls_cert"), key_pem=read("tls_key"),
                                      description=options["description"], actor_name="cli")
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{'Registered' if created else 'Updated'} host {host.name} ({host.connection_text}). "
                          f"Start its worker beside the engine: python manage.py host_worker --host {host.name}")
