"""A restic repository in an S3 bucket (the SeaweedFS test server on 127.0.0.1): the
helper reaches it on the host's network, keys and password only on its stdin."""


import pytest

from restores import services
from tests import dockercli
from tests.backups.fidelity import mountpoint
from tests.repositories.restic_fixtures import PASSWORD, backup_now
from tests.restores.conftest import run_restore

pytestmark = pytest.mark.django_db(transaction=True)


def test_backup_and_restore_through_an_s3_restic_repository(no_enqueue, s3, volume_with_files, inspected_helpers,
                                                            make_user):
    from repositories import restic

    inspected = inspected_helpers
    repo = s3.make_repository(format="restic", password=PASSWORD)
    restic.restic_init(repo)
    assert restic.restic_check_access(repo).endswith("ok")
    name = volume_with_files()

    backup = backup_now(name, repo)

    assert backup.status == "succeeded", backup.error
    assert [s["id"] for s in restic.restic_snapshots(repo)] == [backup.snapshot_id]
    target = dockercli.unique_name("from-s3")
    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target, user=make_user("Operator")))
    assert restore.status == "succeeded", restore.error
    assert (mountpoint(target) / "dir" / "hello.txt").read_text() == "hello\n"
    for text in inspected:
        assert PASSWORD not in text and s3.secret_key not in text and s3.access_key not in text


def test_a_missing_bucket_says_so(no_enqueue, s3, db):
    from repositories import restic
    from repositories.models import Repository

    repo = Repository(name="nobucket", format="restic", url=s3.url("no-such-bucket-here"), region="us-east-1")
    repo.set_secrets(access_key_id=s3.access_key, secret_access_key=s3.secret_key, password=PASSWORD)
    repo.save()
    with pytest.raises(restic.RepositoryMissing) as caught:
        restic.restic_check_access(repo)
    assert "no-such-bucket-here" in str(caught.value)
