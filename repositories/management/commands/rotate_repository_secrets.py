"""python manage.py rotate_repository_secrets: re-encrypt every stored credential and
password with the first key of CARGOHOLD_ENCRYPTION_KEY (after a new key was put in
front); afterwards the old key can be dropped from the list."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.services import audit_record
from project import crypto
from repositories.models import Repository

FIELDS = ("access_key_id_enc", "secret_access_key_enc", "password_enc")


class Command(BaseCommand):
    help = "Re-encrypt the repositories' stored secrets with the first CARGOHOLD_ENCRYPTION_KEY key."

    def handle(self, *args, **options):
        done = 0
        try:
            with transaction.atomic():
                for repo in Repository.objects.select_for_update():
                    for field in FIELDS:
                        setattr(repo, field, crypto.rotate(getattr(repo, field)))
                    repo.save(update_fields=list(FIELDS))
                    done += 1
        except crypto.InvalidToken:
            raise CommandError("A stored secret cannot be decrypted with any key of CARGOHOLD_ENCRYPTION_KEY: "
                               "keep the old key in the list until the rotation succeeded.") from None
        audit_record(action="repository_secrets_rotate", actor_name="cli", object_type="repository",
                     object_name="(all)", params={"repositories": done})
        self.stdout.write(f"Re-encrypted the secrets of {done} repositor{'y' if done == 1 else 'ies'}.")
