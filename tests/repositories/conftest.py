"""Fixtures for the repositories tests: the restic ones (restic_fixtures), and the
backup and restore ones they share with those apps' tests (S3: tests/conftest.py)."""

import pytest

from tests.backups.conftest import volume_with_files  # noqa: F401
from tests.repositories.restic_fixtures import no_enqueue, restic_repo  # noqa: F401
from tests.restores.conftest import backup_root, make_volume  # noqa: F401


@pytest.fixture
def inspected_helpers(monkeypatch):
    """The `docker inspect` text of every data helper restic runs during the test (what
    the engine would show anyone: no secret may be in it)."""
    from contextlib import contextmanager

    from repositories import restic
    from tests import dockercli
    from volumes import datahelper

    inspected: list[str] = []
    real = datahelper.data_helper

    @contextmanager
    def watching(*args, **kwargs):
        with real(*args, **kwargs) as helper:
            inspected.append(dockercli.docker("inspect", helper.container_id))
            yield helper

    monkeypatch.setattr(restic.datahelper, "data_helper", watching)
    return inspected

