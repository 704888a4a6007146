"""Backups into an S3 archive repository and restores from it, end to end: a real Celery
worker, the real engine, a real S3 server (SeaweedFS, tests/s3server.py)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import transaction

from backups import services
from backups.models import Backup
from backups.storage import LocalStorage, manifest_key, storage_for
from restores.models import Restore
from restores.services import restore_new_start
from tests import dockercli
from tests.conftest import wait_for
from tests.restores.conftest import listing
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]

# More than two parts even after compression (random bytes do not compress).
CONTENT = (
    "mkdir -p /data/dir/sub && echo hello > /data/dir/hello.txt && "
    "head -c 40000000 /dev/urandom > /data/dir/sub/random.bin && "
    "ln -s hello.txt /data/dir/link && ln /data/dir/hello.txt /data/dir/hard && "
    "chown -R 1234:4321 /data/dir/sub && chmod 0751 /data/dir"
)


def _ended(row) -> bool:
    row.refresh_from_db()
    return not row.job.is_active if isinstance(row, Restore) else not row.is_active


def _volume(script: str) -> str:
    name = dockercli.create_volume()
    dockercli.fill_volume(name, script)
    mirror_sync()
    return name


def test_a_backup_into_an_s3_repository_is_stored_there_and_restores_exactly(celery_worker, s3_server):
    repo = s3_server.make_repository(prefix="cargohold")
    source = _volume(CONTENT)
    before = listing(source)

    with transaction.atomic():
        backup = services.backup_start(volume_name=source, repository=repo)
    wait_for(lambda: _ended(backup), timeout=180, message="the backup")

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.repository_id == repo.pk and backup.verified
    assert backup.location == f"{repo.url}/{backup.key}"
    storage = storage_for(repo)
    assert storage.stat(backup.key).size == backup.size_bytes > 32 * 1024 * 1024
    assert storage.sha256(backup.key) == backup.sha256
    assert storage.read_json(manifest_key(backup.key))["archive"]["sha256"] == backup.sha256
    keys = list(storage.list_keys())
    assert {backup.key, manifest_key(backup.key)} <= set(keys)
    assert all(key.startswith(backup.key) for key in keys)  # and what belongs beside it (a file index)
    assert list(storage.uploads()) == []
    assert list(LocalStorage(settings.BACKUP_ROOT).list_keys(source)) == []  # nothing went to the local folder

    target = dockercli.unique_name("from-s3")
    with transaction.atomic():
        restore = restore_new_start(backup=backup, volume_name=target)
    wait_for(lambda: _ended(restore), timeout=180, message="the restore")

    assert restore.job.status == "succeeded", restore.job.error
    assert listing(target)["entries"] == before["entries"]


def test_a_backup_with_a_wrong_secret_fails_saying_so_and_stores_nothing(celery_worker, s3_server):
    wrong = "not-the-secret-" + "7" * 16
    repo = s3_server.make_repository(secret_key=wrong)
    source = _volume("echo hello > /data/hello.txt")

    with transaction.atomic():
        backup = services.backup_start(volume_name=source, repository=repo)
    wait_for(lambda: _ended(backup), timeout=120, message="the backup")

    assert backup.status == Backup.Status.FAILED
    assert "refused the access key" in backup.error and "check the key id and secret" in backup.error
    assert wrong not in backup.error and wrong not in (backup.job.log or "")
    bucket = repo.location.bucket
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_the_s3_server_killed_during_a_backup_fails_the_job_clearly_and_leaves_nothing_listed(celery_worker, s3):
    from backups.recovery import backups_recover

    repo = s3.make_repository()
    bucket = repo.location.bucket
    source = _volume("head -c 150000000 /dev/urandom > /data/big.bin")

    with transaction.atomic():
        backup = services.backup_start(volume_name=source, repository=repo)
    # The upload and its marker (written right after it: an upload without one is only
    # aborted after a day, see backups/s3.py) both exist before the server dies.
    wait_for(lambda: s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
             and any(".cargohold-tmp/" in o["Key"]
                     for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])),
             timeout=120, interval=0.05, message="the backup's upload (and its marker) to start")
    s3.kill()
    wait_for(lambda: _ended(backup), timeout=120, message="the backup to fail")

    assert backup.status == Backup.Status.FAILED
    assert f"Lost the connection to the S3 server at {s3.endpoint} while uploading {backup.key}" in backup.error
    assert "nothing was stored" in backup.error
    # The helper that was streaming is gone too (dockerd must not be left holding it).
    assert dockercli.docker("ps", "-aq", "--filter", f"label=cargohold.volume={source}", timeout=30) == ""
    s3.start()
    storage = storage_for(repo)
    assert list(storage.list_keys()) == []
    assert [u["Key"] for u in storage.uploads()] == [backup.key]  # nobody could abort it while the server was down

    report = backups_recover()

    assert f"s3:{s3.endpoint}/{bucket}/{backup.key} (unfinished upload)" in report["temp_removed"]
    assert list(storage.uploads()) == [] and s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
