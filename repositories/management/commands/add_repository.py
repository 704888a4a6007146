"""python manage.py add_repository NAME --url URL --format archive|restic [--password-file F]
[--access-key-id K --secret-access-key-file F] [--region R] [--default]

Secrets come from files (`-`: standard input), never from arguments: a command line is
visible to every user of the machine (ps, /proc) and lands in shell histories.
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from project.errors import CargoholdError
from repositories import services
from repositories.models import Repository


def _read_secret(path: str, what: str, stdin_used: list) -> str:
    if path == "-":
        if stdin_used:
            raise CommandError("Only one secret can come from standard input.")
        stdin_used.append(True)
        text = sys.stdin.readline()
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(4096)
        except OSError as exc:
            raise CommandError(f"Cannot read the {what} file {path}: {exc.strerror or exc}.") from None
    text = text.rstrip("\r\n")
    if not text:
        raise CommandError(f"The {what} file {path} is empty.")
    return text


class Command(BaseCommand):
    help = "Add a repository (a folder or an S3 bucket, archives or restic); prints a generated restic password once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--url", required=True, help="a local path, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]")
        parser.add_argument("--format", choices=Repository.Format.values, default=Repository.Format.ARCHIVE)
        parser.add_argument("--password-file", default="", help="restic: a file holding the password ('-': stdin); "
                                                                 "without it a strong one is generated and printed once")
        parser.add_argument("--access-key-id", default="", help="S3: the access key id (an identifier, not the "
                                                                  "secret; --access-key-id-file keeps it out of ps too)")
        parser.add_argument("--access-key-id-file", default="", help="S3: a file holding the access key id")
        parser.add_argument("--secret-access-key-file", default="", help="S3: a file holding the secret key ('-': stdin)")
        parser.add_argument("--region", default="")
        parser.add_argument("--no-path-style", action="store_true", help="S3: virtual-host style URLs (AWS)")
        parser.add_argument("--default", action="store_true", help="make it the default repository")

    def handle(self, *args, name, url, format, password_file, access_key_id, access_key_id_file,
               secret_access_key_file, region,
               no_path_style, default, **options):
        stdin_used: list = []
        password = _read_secret(password_file, "password", stdin_used) if password_file else ""
        if access_key_id_file:
            if access_key_id:
                raise CommandError("Give --access-key-id or --access-key-id-file, not both.")
            access_key_id = _read_secret(access_key_id_file, "access key id", stdin_used)
        secret = _read_secret(secret_access_key_file, "secret access key", stdin_used) \
            if secret_access_key_file else ""
        if bool(access_key_id) != bool(secret):
            raise CommandError("Give both --access-key-id and --secret-access-key-file, or neither.")
        try:
            saved = services.repository_create(
                name=name, url=url, format=format, region=region, path_style=not no_path_style,
                access_key_id=access_key_id, secret_access_key=secret, password=password, is_default=default,
                actor_name="cli")
        except CargoholdError as exc:
            raise CommandError(str(exc)) from None
        repo = saved.repository
        self.stderr.write(f"Added the repository {repo.name} ({repo.format}, {repo.url})"
                          f"{', the default' if repo.is_default else ''}.")
        if saved.generated_password:
            self.stderr.write("The generated restic password follows, ONCE. Keep it safe: losing it loses the "
                              "backups in this repository. Cargohold never shows it again.")
            self.stdout.write(saved.generated_password)
