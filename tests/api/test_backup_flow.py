"""Through the API against the real engine and a real worker: back up a volume, follow its
job to the end, download the archive, verify it, restore it into a new volume."""

import hashlib

import pytest

from accounts.models import AuditEvent
from tests import dockercli
from tests.conftest import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _follow(client, job_url: str) -> dict:
    def ended():
        job = client.get(job_url).json()
        return job if not job["is_active"] else None

    return wait_for(ended, timeout=120, interval=0.5, message=f"job {job_url} to end")


def test_backup_started_through_the_api_is_followed_to_success_and_downloaded(
        api_for, volume_with_files, celery_worker):
    name = volume_with_files()
    client = api_for("Admin")
    started = client.post("/api/v1/backups/", {"volume": name}, content_type="application/json")
    assert started.status_code == 202, started.content
    job = _follow(client, started.json()["job"]["url"])
    assert job["status"] == "succeeded", job["error"]
    backup = client.get(started.json()["backup"]["url"]).json()
    assert backup["status"] == "succeeded" and backup["restorable"] and backup["sha256"]

    download = client.get(backup["download_url"])
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == backup["sha256"] == download["X-Checksum-SHA256"]
    assert AuditEvent.objects.filter(action="backup_download", actor=client.user,
                                     object_name=str(backup["id"])).exists()

    verify = client.post(f"/api/v1/backups/{backup['id']}/verify/")
    assert verify.status_code == 202
    assert _follow(client, verify.json()["url"])["status"] == "succeeded"

    target = dockercli.unique_name("api-restored")
    restore = client.post(f"/api/v1/backups/{backup['id']}/restore/", {"volume_name": target},
                          content_type="application/json")
    assert restore.status_code == 202, restore.content
    assert _follow(client, restore.json()["job"]["url"])["status"] == "succeeded"
    assert dockercli.volume_exists(target)
    assert client.get(restore.json()["url"]).json()["status"] == "succeeded"
