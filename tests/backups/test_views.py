"""Backup pages: allowed, wrong method, no access, read-only role, htmx and full page."""

import io
import tarfile

import pytest
from django.test import Client

from accounts.models import AuditEvent
import tarstream as archive
from backups.models import Backup
from backups.storage import get_storage
from tests.backups.conftest import backup_row
from jobs.models import Job
from volumes.models import Container, Mount, Volume

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_enqueue(no_enqueue, backup_root):
    """Pages only queue jobs; nothing here needs a worker."""


def stored_backup(volume_name="shop_db", **fields) -> Backup:
    """A succeeded backup with a real (tiny) archive in storage."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("data/hello.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    out = io.BytesIO()
    packed = archive.pack([buf.getvalue()], out, compression="zstd")
    key = f"{volume_name}/{volume_name}-20240501T102030Z.tar.zst"
    storage = get_storage()
    with storage.open_temp_writer(key) as w:
        w.write(out.getvalue())
        w.commit()
    values = dict(
        volume=Volume.objects.filter(name=volume_name).first(), volume_name=volume_name,
        status=Backup.Status.SUCCEEDED, key=key, location=storage.location(key), sha256=packed.sha256,
        size_bytes=packed.compressed_bytes, bytes_read=packed.stats.tar_bytes, file_count=1, verified=True,
    )
    values.update(fields)
    return backup_row(**values)


@pytest.fixture
def volume():
    return Volume.objects.create(name="shop_db", size_bytes=12345)


# --- list and detail ------------------------------------------------------------------------


def test_list_shows_backups_with_their_columns(client_for, volume):
    stored_backup()
    backup_row(volume_name="other", status=Backup.Status.FAILED, error="disk on fire")

    response = client_for("Viewer").get("/backups/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "shop_db" in html and "other" in html and "verified" in html
    assert "Download" not in html  # Viewers may not download


def test_list_filters_by_volume_status_and_date(client_for, volume):
    stored_backup()
    backup_row(volume_name="other", status=Backup.Status.FAILED)
    client = client_for("Viewer")

    by_volume = client.get("/backups/?volume=other").content.decode()
    by_status = client.get("/backups/?status=succeeded").content.decode()
    by_date = client.get("/backups/?from=2000-01-01&to=2000-01-02").content.decode()

    assert 'data-status="failed"' in by_volume and 'data-status="succeeded"' not in by_volume
    assert 'data-status="succeeded"' in by_status and 'data-status="failed"' not in by_status
    assert "No backups match" in by_date


def test_list_ignores_malformed_filters(client_for, volume):
    stored_backup()

    response = client_for("Viewer").get("/backups/?status=<script>&from=yesterday&to=2024-13-45")

    assert response.status_code == 200 and 'data-status="succeeded"' in response.content.decode()


def test_list_htmx_renders_only_the_table(client_for, volume):
    stored_backup()

    response = client_for("Viewer").get("/backups/", HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="backup-table"') and "<html" not in html


def test_list_requires_login_and_a_role(client_for):
    assert Client().get("/backups/").status_code == 302
    assert client_for(None).get("/backups/").status_code == 403


def test_list_refuses_post(client_for):
    assert client_for("Admin").post("/backups/").status_code == 405


def test_detail_polls_while_active_and_stops_when_done(client_for, volume):
    running = backup_row(volume_name="shop_db", status=Backup.Status.RUNNING)
    done = stored_backup()
    client = client_for("Viewer")

    full = client.get(f"/backups/{running.pk}/")
    polling = client.get(f"/backups/{running.pk}/", HTTP_HX_REQUEST="true")
    finished = client.get(f"/backups/{done.pk}/", HTTP_HX_REQUEST="true")

    assert full.status_code == 200 and 'id="job-' in full.content.decode()
    assert polling.status_code == 200 and 'hx-trigger="every 2s"' in polling.content.decode()
    assert finished.status_code == 286 and done.sha256 in finished.content.decode()


def test_detail_of_unknown_backup_is_404(client_for):
    assert client_for("Viewer").get("/backups/999/").status_code == 404


def test_volume_page_lists_its_backups_and_offers_back_up_now_to_operators(client_for, volume):
    stored_backup()

    operator = client_for("Operator").get("/volumes/shop_db/").content.decode()

    assert 'id="volume-backups"' in operator and "Back up now" in operator
    assert 'data-status="succeeded"' in operator


def test_viewers_get_no_back_up_button(client_for, volume):
    html = client_for("Viewer").get("/volumes/shop_db/").content.decode()

    assert "Back up now" not in html and 'id="volume-backups"' in html


# --- back up now -----------------------------------------------------------------------------


def test_back_up_now_queues_a_backup_and_its_job(make_user, volume):
    operator = make_user("Operator")
    client = Client()
    client.force_login(operator)

    response = client.post("/volumes/shop_db/backup/", {"compression": "gzip", "stop_containers": "on"})

    backup = Backup.objects.get()
    assert response.status_code == 302 and response.url == f"/backups/{backup.pk}/"
    assert backup.status == Backup.Status.QUEUED and backup.compression == "gzip" and backup.stop_containers
    assert backup.job.kind == "backup" and backup.job.status == Job.Status.QUEUED
    assert backup.job.progress_total == 12345 and backup.bytes_expected == 12345
    assert backup.created_by == operator and backup.started_by == operator.username
    assert AuditEvent.objects.filter(action="backup_start", object_name="shop_db", actor=operator).exists()


def test_back_up_now_form_page_shows_what_would_be_stopped(client_for, volume):
    container = Container.objects.create(engine_id="c1", name="shop-db-1", state="running")
    Mount.objects.create(container=container, kind="volume", volume=volume, destination="/var/lib/db")

    response = client_for("Operator").get("/volumes/shop_db/backup/")

    assert response.status_code == 200 and "shop-db-1" in response.content.decode()


def test_back_up_now_defaults_to_the_volume_label(client_for, volume):
    Volume.objects.create(name="labelled", labels={"cargohold.stop-during-backup": "true"})
    client = client_for("Operator")

    labelled = client.get("/volumes/labelled/backup/").content.decode()
    plain = client.get("/volumes/shop_db/backup/").content.decode()

    assert 'id="id_stop_containers" checked' in labelled
    assert 'id="id_stop_containers">' in plain


def test_back_up_now_refuses_bad_compression_and_changes_nothing(client_for, volume):
    response = client_for("Operator").post("/volumes/shop_db/backup/", {"compression": "rar"})

    assert response.status_code == 400 and not Backup.objects.exists()


def test_back_up_now_of_a_removed_volume_says_so(client_for):
    from django.utils import timezone

    Volume.objects.create(name="old", gone_since=timezone.now())

    response = client_for("Operator").post("/volumes/old/backup/", {"compression": "zstd"}, follow=True)

    assert "no longer on the engine" in response.content.decode() and not Backup.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_viewers_may_not_back_up(client_for, volume, method):
    response = getattr(client_for("Viewer"), method)("/volumes/shop_db/backup/")

    assert response.status_code == 403 and not Backup.objects.exists()
    assert AuditEvent.objects.filter(action="permission_denied", result="denied").exists()


def test_back_up_now_of_unknown_volume_is_404(client_for):
    assert client_for("Operator").get("/volumes/nope/backup/").status_code == 404


def test_back_up_now_refuses_other_methods(client_for, volume):
    assert client_for("Operator").put("/volumes/shop_db/backup/").status_code == 405


def test_back_up_now_needs_csrf(make_user, volume):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("Operator"))

    assert client.post("/volumes/shop_db/backup/", {"compression": "zstd"}).status_code == 403
    assert not Backup.objects.exists()


# --- bulk -----------------------------------------------------------------------------------


def test_bulk_backs_up_the_selected_volumes(client_for, volume):
    Volume.objects.create(name="cache")
    client = client_for("Operator")

    confirm = client.get("/backups/bulk/?volume=shop_db&volume=cache")
    response = client.post("/backups/bulk/", {"volume": ["shop_db", "cache"], "stop_containers": "no",
                                              "compression": "zstd"})

    assert confirm.status_code == 200 and "Back up 2 volumes" in confirm.content.decode()
    assert response.status_code == 302 and response.url == "/backups/"
    assert sorted(Backup.objects.values_list("volume_name", flat=True)) == ["cache", "shop_db"]
    assert not Backup.objects.filter(stop_containers=True).exists()


def test_bulk_backs_up_a_compose_projects_volumes(client_for, volume):
    labelled = Volume.objects.create(name="shop_cache", labels={"com.docker.compose.project": "shop"})
    Volume.objects.create(name="unrelated", labels={"com.docker.compose.project": "blog"})
    web = Container.objects.create(engine_id="c1", name="shop-web-1", compose_project="shop", state="running")
    Mount.objects.create(container=web, kind="volume", volume=volume, destination="/db")  # external volume

    response = client_for("Operator").post("/backups/bulk/", {"project": "shop", "stop_containers": "default",
                                                              "compression": "zstd"})

    assert response.status_code == 302
    assert sorted(Backup.objects.values_list("volume_name", flat=True)) == sorted(["shop_db", labelled.name])


def test_bulk_with_an_unknown_volume_changes_nothing(client_for, volume):
    response = client_for("Operator").post("/backups/bulk/", {"volume": ["shop_db", "../../etc"],
                                                              "stop_containers": "no", "compression": "zstd"})

    assert response.status_code == 400 and "Unknown or removed volumes: ../../etc" in response.content.decode()
    assert not Backup.objects.exists()


def test_bulk_with_nothing_selected_says_so(client_for):
    response = client_for("Operator").get("/backups/bulk/")

    assert response.status_code == 400 and "Select at least one volume" in response.content.decode()


def test_bulk_is_refused_to_viewers(client_for, volume):
    response = client_for("Viewer").post("/backups/bulk/", {"volume": ["shop_db"], "stop_containers": "no",
                                                            "compression": "zstd"})
    assert response.status_code == 403 and not Backup.objects.exists()


def test_volume_list_offers_selection_to_operators_only(client_for, volume):
    operator = client_for("Operator").get("/volumes/").content.decode()

    assert 'form="bulk-backup" name="volume" value="shop_db"' in operator and "Back up selected" in operator
    viewer = client_for("Viewer").get("/volumes/").content.decode()
    assert 'form="bulk-backup"' not in viewer


# --- download --------------------------------------------------------------------------------


def test_download_streams_the_archive_and_is_audited(client_for, volume):
    backup = stored_backup()

    response = client_for("Operator").get(f"/backups/{backup.pk}/download/")

    body = b"".join(response.streaming_content)
    assert response.status_code == 200
    assert body == open(backup.location, "rb").read()
    assert response["Content-Disposition"].startswith("attachment;") and backup.file_name in response["Content-Disposition"]
    assert response["X-Checksum-SHA256"] == backup.sha256
    assert AuditEvent.objects.filter(action="backup_download", object_name=str(backup.pk), result="ok").exists()


def test_viewers_may_not_download(client_for, volume):
    backup = stored_backup()

    assert client_for("Viewer").get(f"/backups/{backup.pk}/download/").status_code == 403


def test_download_of_a_failed_backup_is_404(client_for):
    backup = backup_row(volume_name="x", status=Backup.Status.FAILED)

    assert client_for("Operator").get(f"/backups/{backup.pk}/download/").status_code == 404


def test_download_of_a_missing_file_is_404_and_audited(client_for, volume):
    import os

    backup = stored_backup()
    os.unlink(backup.location)

    response = client_for("Operator").get(f"/backups/{backup.pk}/download/")

    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="backup_download", result="error").exists()


def test_download_refuses_post(client_for, volume):
    backup = stored_backup()
    assert client_for("Operator").post(f"/backups/{backup.pk}/download/").status_code == 405


# --- verify ----------------------------------------------------------------------------------


def test_verify_button_queues_a_verification_job(client_for, volume):
    backup = stored_backup()

    response = client_for("Operator").post(f"/backups/{backup.pk}/verify/")

    assert response.status_code == 302
    job = Job.objects.get(kind="backup_verify")
    assert job.params == {"backup": backup.pk} and job.status == Job.Status.QUEUED


def test_verify_is_refused_to_viewers_and_to_get(client_for, volume):
    backup = stored_backup()

    assert client_for("Viewer").post(f"/backups/{backup.pk}/verify/").status_code == 403
    assert client_for("Operator").get(f"/backups/{backup.pk}/verify/").status_code == 405
    assert not Job.objects.filter(kind="backup_verify").exists()


# --- delete ----------------------------------------------------------------------------------


def test_delete_asks_for_confirmation_then_the_worker_removes_archive_and_row(client_for, volume):
    import os

    from backups import worker
    from jobs.runner import JobContext

    backup = stored_backup()
    client = client_for("Admin")

    page = client.get(f"/backups/{backup.pk}/delete/")
    unconfirmed = client.post(f"/backups/{backup.pk}/delete/")
    assert os.path.exists(backup.location) and not Job.objects.filter(kind="backup_delete").exists()
    confirmed = client.post(f"/backups/{backup.pk}/delete/", {"confirm": str(backup.pk)})

    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    assert unconfirmed.status_code == 400
    job = Job.objects.get(kind="backup_delete")
    assert confirmed.status_code == 302 and confirmed.url == f"/jobs/{job.pk}/"
    assert job.params == {"backup": backup.pk} and job.created_by.username.startswith("admin")
    worker.backup_delete_perform(JobContext(job))  # what the worker does
    assert not Backup.objects.filter(pk=backup.pk).exists()
    assert not os.path.exists(backup.location)
    event = AuditEvent.objects.get(action="backup_delete")
    assert event.actor_name.startswith("admin") and event.params["sha256"] == backup.sha256


@pytest.mark.parametrize("role", ["Viewer", "Operator"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_only_admins_may_delete(client_for, volume, role, method):
    backup = stored_backup()

    response = getattr(client_for(role), method)(f"/backups/{backup.pk}/delete/", {"confirm": str(backup.pk)})

    assert response.status_code == 403 and Backup.objects.filter(pk=backup.pk).exists()
    assert not Job.objects.filter(kind="backup_delete").exists()


def test_a_running_backup_cannot_be_deleted(client_for, volume):
    backup = backup_row(volume_name="shop_db", status=Backup.Status.RUNNING)

    response = client_for("Admin").post(f"/backups/{backup.pk}/delete/", {"confirm": str(backup.pk)}, follow=True)

    assert "still running" in response.content.decode() and Backup.objects.filter(pk=backup.pk).exists()


def test_a_backup_being_verified_cannot_be_deleted(client_for, volume):
    from datetime import timedelta

    from jobs.locks import backup_lock, lock_acquire

    backup = stored_backup()
    lock_acquire(resource=backup_lock(backup.pk), owner="job 7 (backup_verify)", ttl=timedelta(minutes=1))

    response = client_for("Admin").post(f"/backups/{backup.pk}/delete/", {"confirm": str(backup.pk)}, follow=True)

    assert "in use: job 7" in response.content.decode() and Backup.objects.filter(pk=backup.pk).exists()
    assert not Job.objects.filter(kind="backup_delete").exists()


def test_the_worker_refuses_to_delete_a_backup_that_is_being_read(client_for, volume):
    from datetime import timedelta

    from backups import worker
    from jobs.locks import backup_lock, lock_acquire

    backup = stored_backup()
    lock_acquire(resource=backup_lock(backup.pk), owner="job 8 (restore)", ttl=timedelta(minutes=1))

    with pytest.raises(Exception, match="in use: job 8"):
        worker.backup_delete(backup=backup)
    assert Backup.objects.filter(pk=backup.pk).exists()


def test_list_shows_progress_of_the_first_active_backups_only(client_for, volume):
    for _ in range(22):
        job = Job.objects.create(kind="backup", target="shop_db")
        Backup.objects.create(volume_name="shop_db", job=job)

    html = client_for("Viewer").get("/backups/").content.decode()

    assert html.count('class="job job-queued"') == 20 and "22 in all" in html
