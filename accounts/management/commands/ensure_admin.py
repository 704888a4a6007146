import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from accounts.actors import acting_as, cli_actor_name
from accounts.roles import ADMIN, ensure_roles


class Command(BaseCommand):
    help = "Create the `admin` account when no administrator exists, and print how to log in."

    def handle(self, *args, **options):
        with acting_as(name=cli_actor_name()):  # the audit trail names who ran it
            self._ensure_admin()

    def _ensure_admin(self):
        ensure_roles()
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Administrator account exists; log in with it.")
            return
        password = os.environ.get("CARGOHOLD_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username="admin", email="", password=password)
        user.groups.add(Group.objects.get(name=ADMIN))
        if os.environ.get("CARGOHOLD_ADMIN_PASSWORD"):
            self.stdout.write(self.style.SUCCESS("Created user 'admin' with the password from CARGOHOLD_ADMIN_PASSWORD."))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    "Created user 'admin' with password:\n\n    " + password + "\n\n"
                    "It is shown only this once. Change it under /admin/ after logging in."
                )
            )
