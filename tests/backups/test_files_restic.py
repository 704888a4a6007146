"""Downloads of one file or folder of a restic backup: a worker prepares it (restic dump in
the data helper), the page follows the job, then serves it; prepared files go after an hour.
Real engine, real restic."""

import io
import os
import tarfile
import time

import pytest

from accounts.models import AuditEvent
from backups import extract
from backups.models import BackupEntry
from jobs.models import Job
from jobs.runner import job_perform
from tests.backups.conftest import backup_row, volume_with_files  # noqa: F401
from tests.repositories.restic_fixtures import backup_now, no_enqueue, restic_repo  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def restic_backup(no_enqueue, restic_repo, volume_with_files, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    backup = backup_now(volume_with_files(), restic_repo())
    assert backup.status == "succeeded", backup.error
    return backup


def prepare(client, backup, path: str) -> Job:
    response = client.post(f"/backups/{backup.pk}/files/extract/", {"path": path})
    job = Job.objects.filter(kind=extract.KIND_EXTRACT).latest("pk")
    assert response.status_code == 302 and response["Location"] == f"/backups/{backup.pk}/files/extract/{job.pk}/"
    job_perform(job.pk)  # what the worker does
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job


def test_a_file_is_prepared_then_downloaded(client_for, restic_backup):
    client = client_for("Operator")
    listing = client.get(f"/backups/{restic_backup.pk}/files/?path=dir").content.decode()
    assert 'form="extract-form" name="path" value="dir/hello.txt"' in listing  # no direct download link
    assert "files/download/" not in listing

    job = prepare(client, restic_backup, "dir/hello.txt")
    page = client.get(f"/backups/{restic_backup.pk}/files/extract/{job.pk}/").content.decode()
    response = client.get(f"/backups/{restic_backup.pk}/files/extract/{job.pk}/download/")

    assert 'id="extract-ready"' in page
    assert b"".join(response.streaming_content) == b"hello\n"
    assert response["Content-Disposition"] == 'attachment; filename="hello.txt"'
    assert AuditEvent.objects.filter(action="backup_file_download", object_name=str(restic_backup.pk)).exists()


def test_a_folder_comes_as_a_tar(client_for, restic_backup):
    client = client_for("Operator")

    job = prepare(client, restic_backup, "dir/sub")
    response = client.get(f"/backups/{restic_backup.pk}/files/extract/{job.pk}/download/")

    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as tf:
        names = tf.getnames()
        data = tf.extractfile(next(m for m in tf.getmembers() if m.name.endswith("random.bin"))).read()
    assert response["Content-Disposition"] == 'attachment; filename="sub.tar"'
    assert any(n.endswith("sub/random.bin") for n in names) and len(data) == 300000


def test_the_polled_page_stops_when_the_job_ends(client_for, restic_backup):
    client = client_for("Operator")
    job = prepare(client, restic_backup, "dir/hello.txt")

    response = client.get(f"/backups/{restic_backup.pk}/files/extract/{job.pk}/", HTTP_HX_REQUEST="true")

    assert response.status_code == 286 and 'id="extract-ready"' in response.content.decode()
    other = backup_row(volume_name=restic_backup.volume_name, status="succeeded", key="k")
    assert client.get(f"/backups/{other.pk}/files/extract/{job.pk}/").status_code == 404  # not that backup's


def test_viewers_may_not_prepare_nor_fetch(client_for, restic_backup):
    operator = client_for("Operator")
    job = prepare(operator, restic_backup, "dir/hello.txt")
    viewer = client_for("Viewer")

    assert viewer.post(f"/backups/{restic_backup.pk}/files/extract/", {"path": "dir/hello.txt"}).status_code == 403
    assert viewer.get(f"/backups/{restic_backup.pk}/files/extract/{job.pk}/download/").status_code == 403
    assert operator.get(f"/backups/{restic_backup.pk}/files/extract/", {"path": "x"}).status_code == 405


def test_a_prepared_file_is_removed_after_an_hour(client_for, restic_backup):
    client = client_for("Operator")
    job = prepare(client, restic_backup, "dir/hello.txt")
    path = extract.extract_file(job)
    assert path is not None

    assert extract.downloads_clean() == []  # fresh: kept
    old = time.time() - extract.KEEP_SECONDS - 5
    os.utime(path, (old, old))
    assert extract.downloads_clean() == [path.name]

    assert client.get(f"/backups/{restic_backup.pk}/files/extract/{job.pk}/download/").status_code == 404


def test_unknown_paths_and_links_are_not_prepared(client_for, restic_backup):
    client = client_for("Operator")

    assert client.post(f"/backups/{restic_backup.pk}/files/extract/", {"path": "nope"}).status_code == 404
    assert client.post(f"/backups/{restic_backup.pk}/files/extract/", {"path": "../x"}).status_code == 404
    assert BackupEntry.objects.filter(backup=restic_backup, path="dir/link", kind="l").exists()
    assert client.post(f"/backups/{restic_backup.pk}/files/extract/", {"path": "dir/link"}).status_code == 404
    assert not Job.objects.filter(kind=extract.KIND_EXTRACT).exists()
