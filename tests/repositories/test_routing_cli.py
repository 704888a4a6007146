"""The command line with a real Celery worker: add_repository, backup_volume --repository,
list_backups --json naming each backup's repository, a repository's connection test."""

import json

import pytest

from backups.models import Backup
from repositories.models import Repository
from tests.backups.test_worker import _volume, manage
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.worker]


def test_backup_volume_into_a_named_repository_with_a_real_worker(celery_worker, tmp_path):
    folder = tmp_path / "named"
    added = manage("add_repository", "named", "--url", str(folder), "--format", "archive")
    assert added.returncode == 0, added.stderr
    name = _volume("echo named > /data/n.txt")

    done = manage("backup_volume", name, "--repository", "named", "--wait", "--timeout", "120")

    assert done.returncode == 0, done.stderr
    backup = Backup.objects.get(pk=int(done.stdout.strip()))
    assert backup.repository.name == "named" and backup.status == "succeeded"
    assert (folder / backup.key).is_file() and backup.location == str(folder / backup.key)
    listed = json.loads(manage("list_backups", "--volume", name, "--json").stdout)
    assert [(r["id"], r["repository"]) for r in listed] == [(backup.pk, "named")]
    assert listed[0]["started_at"] and listed[0]["finished_at"]


def test_backup_volume_names_an_unknown_repository(celery_worker):
    name = _volume()
    done = manage("backup_volume", name, "--repository", "nowhere")
    assert done.returncode != 0 and "no repository called 'nowhere'" in done.stderr
    assert not Backup.objects.filter(volume_name=name).exists()


def test_test_connection_records_what_the_worker_found(celery_worker, tmp_path):
    from repositories import services

    folder = tmp_path / "probe"
    (folder / "v").mkdir(parents=True)
    (folder / "v" / "a.tar.zst.manifest.json").write_text("{}")
    repo = services.repository_create(name="probe", url=str(folder), actor_name="test").repository
    job = services.repository_check_start(repository=repo)
    wait_for(lambda: Repository.objects.get(pk=repo.pk).checked_at, timeout=60, message="the check")
    repo.refresh_from_db()
    assert repo.status_text.startswith("reachable: listed 1 objects (1 manifests)"), repo.status_text
    job.refresh_from_db()
    wait_for(lambda: not type(job).objects.get(pk=job.pk).is_active, timeout=30, message="the job's end")

    # An S3 location nobody answers at: the job fails and the repository says why.
    dead = Repository(name="dead", url="s3:http://127.0.0.1:9/bucket-x")
    dead.set_secrets(access_key_id="k", secret_access_key="s")
    dead.save()
    services.repository_check_start(repository=dead)
    wait_for(lambda: Repository.objects.get(pk=dead.pk).checked_at, timeout=120, message="the failed check")
    assert Repository.objects.get(pk=dead.pk).status_text.startswith("failed:")
