"""The restore and import pages under the polling convention (jobs/polling.py): each polls
its own region; a roll back or removal of the partial volume is followed on the restore's page."""

import pytest

from backups.models import Backup
from jobs.models import Job
from restores.models import Restore

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def restore():
    backup_job = Job.objects.create(kind="backup", target="shop_db", status=Job.Status.SUCCEEDED)
    backup = Backup.objects.create(volume_name="shop_db", job=backup_job, key="shop_db/a.tar.zst", sha256="c" * 64)
    job = Job.objects.create(kind="restore", target="copy", status=Job.Status.RUNNING)
    return Restore.objects.create(job=job, backup=backup, backup_label="#1", mode="new", volume_name="copy")


def test_the_restore_page_polls_its_own_region_until_its_job_ends(client_for, restore):
    client = client_for("Viewer")

    running = client.get(f"/restores/{restore.pk}/", **HTMX)
    body = running.content.decode()
    assert running.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith(f'<div id="restore-status" data-poll-region="/restores/{restore.pk}/" '
                                    f'hx-get="/restores/{restore.pk}/" hx-trigger="every 2s"')
    assert 'id="restore-facts"' in body and 'hx-swap-oob' not in body  # one region, facts inside

    Job.objects.filter(pk=restore.job_id).update(status=Job.Status.FAILED, error="no space")
    ended = client.get(f"/restores/{restore.pk}/", **HTMX)
    assert ended.status_code == 286 and "hx-get" not in ended.content.decode()


def test_removing_the_partial_volume_is_followed_on_the_restores_page(client_for, restore):
    Job.objects.filter(pk=restore.job_id).update(status=Job.Status.FAILED, error="no space")
    Restore.objects.filter(pk=restore.pk).update(partial=True)
    client = client_for("Operator")
    page = client.get(f"/restores/{restore.pk}/").content.decode()
    assert f'hx-post="/restores/{restore.pk}/remove-partial/" hx-target="#restore-status"' in page

    response = client.post(f"/restores/{restore.pk}/remove-partial/", follow=True, **HTMX)

    body = response.content.decode()
    job = Job.objects.get(kind="restore_remove_partial")
    assert response.redirect_chain == [(f"/restores/{restore.pk}/", 302)]
    assert response.status_code == 200 and f'hx-get="/restores/{restore.pk}/" hx-trigger="every 2s"' in body
    follow_up = body[body.index('id="restore-follow-up"'):]
    assert f'id="job-{job.pk}"' in follow_up and 'data-job-status="queued"' in follow_up
    # Its Cancel comes back here too.
    assert f'name="next" value="/restores/{restore.pk}/"' in follow_up

    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    assert client.get(f"/restores/{restore.pk}/", **HTMX).status_code == 286


def test_a_roll_back_job_keeps_the_restores_page_polling(client_for, restore):
    Job.objects.filter(pk=restore.job_id).update(status=Job.Status.FAILED, error="container mounted it")
    rollback = Job.objects.create(kind="restore_rollback", target="copy", status=Job.Status.RUNNING,
                                  params={"restore": restore.pk})
    client = client_for("Viewer")

    response = client.get(f"/restores/{restore.pk}/", **HTMX)
    assert response.status_code == 200 and f'id="job-{rollback.pk}"' in response.content.decode()

    Job.objects.filter(pk=rollback.pk).update(status=Job.Status.SUCCEEDED)
    assert client.get(f"/restores/{restore.pk}/", **HTMX).status_code == 286


def test_the_import_page_polls_its_own_region(client_for):
    job = Job.objects.create(kind="backup_import", target="shop_db", target_type="backup", status=Job.Status.RUNNING)
    backup = Backup.objects.create(volume_name="shop_db", job=job, origin=Backup.Origin.IMPORTED)
    client = client_for("Viewer")

    running = client.get(f"/backups/import/{backup.pk}/", **HTMX)
    assert running.status_code == 200
    assert f'id="import-status" data-poll-region="/backups/import/{backup.pk}/" hx-get="/backups/import/{backup.pk}/"' \
        in running.content.decode()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    assert client.get(f"/backups/import/{backup.pk}/", **HTMX).status_code == 286
