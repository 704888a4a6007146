from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts, roles and audit"

    def ready(self):
        from accounts import (
            ownership,  # noqa: F401  (keeps VolumeOwnership for single-row writes)
            signals,  # noqa: F401  (login / failed login audit)
        )
