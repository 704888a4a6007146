"""Fixtures for API tests: tokens for a role, volumes known to the mirror."""

import pytest

from tests.backups.conftest import backup_row, volume_with_files  # noqa: F401  (shared fixtures)


@pytest.fixture
def token_for(make_user):
    """token_for("Operator", read_only=False, days=30, user=None) -> (user, raw token)."""
    from api.tokens import token_create

    def make(role=None, *, read_only: bool = False, days: int = 30, user=None, name: str = "tests"):
        user = user or make_user(role)
        _, raw = token_create(user=user, name=name, days=days, read_only=read_only)
        return user, raw

    return make


@pytest.fixture
def api_for(token_for):
    """api_for("Viewer") -> a Django test client that sends that role's token on every request."""
    from django.test import Client

    def make(role=None, **kwargs):
        user, raw = token_for(role, **kwargs)
        client = Client(headers={"Authorization": f"Bearer {raw}"})
        client.user = user
        return client

    return make


def mirror_volume(name: str, **fields):
    """A volume row in the mirror only (for permission tests that start nothing)."""
    from volumes.models import Volume

    return Volume.objects.create(name=name, **fields)
