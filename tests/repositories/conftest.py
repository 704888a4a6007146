"""Fixtures for the repositories tests: the restic ones (restic_fixtures), and the
backup and restore ones they share with those apps' tests (S3: tests/conftest.py)."""

from tests.backups.conftest import volume_with_files  # noqa: F401
from tests.repositories.restic_fixtures import no_enqueue, restic_repo  # noqa: F401
from tests.restores.conftest import backup_root, make_volume  # noqa: F401
