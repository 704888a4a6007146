"""Secrets at rest: Fernet (the `cryptography` library's authenticated encryption) with a
key from the environment.

CARGOHOLD_ENCRYPTION_KEY holds one or more Fernet keys, comma-separated, the first one
used to encrypt (MultiFernet: add a new key in front, run `rotate_repository_secrets`,
then drop the old one). Without it a per-installation key is kept in var/encryption_key
(mode 0600), like the Django secret key. Losing the key makes the stored credentials
unreadable (not the backups): re-enter them on the Repositories page.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from project.errors import CargoholdError


class SecretUnreadable(CargoholdError):
    pass


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError):
        raise SecretUnreadable(
            "CARGOHOLD_ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64 bytes; "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        ) from None


def _keys() -> tuple[str, ...]:
    return tuple(settings.ENCRYPTION_KEYS)


def encrypt(text: str) -> str:
    """The token to store for `text` ("" stays "": no secret)."""
    if not text:
        return ""
    return _fernet(_keys()).encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet(_keys()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored credential cannot be decrypted with CARGOHOLD_ENCRYPTION_KEY (was the key changed?): "
            "enter the repository's credentials again."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt with the first key (after a new key was put in front)."""
    return _fernet(_keys()).rotate(token.encode()).decode() if token else ""


def generate_key() -> str:
    return Fernet.generate_key().decode()
