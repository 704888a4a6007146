"""The backup page and the backups list under the polling convention (jobs/polling.py)."""

import pytest
from django.utils import timezone

from backups.models import Backup
from jobs.models import Job

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _backup(status=Job.Status.SUCCEEDED, **fields) -> Backup:
    job = Job.objects.create(kind="backup", target="shop_db", status=status)
    values = dict(key="shop_db/shop_db-1.tar.zst", sha256="b" * 64, size_bytes=10, file_count=1, verified=True,
                  verified_at=timezone.now())
    values.update(fields)
    return Backup.objects.create(volume_name="shop_db", job=job, **values)


def test_the_backup_page_polls_its_own_region_with_the_buttons_inside(client_for):
    backup = _backup(status=Job.Status.RUNNING, key="", sha256="", verified=False, verified_at=None)
    client = client_for("Admin")

    polling = client.get(f"/backups/{backup.pk}/", **HTMX)
    body = polling.content.decode()
    assert polling.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith(f'<div id="backup-status" data-poll-region="/backups/{backup.pk}/" '
                                    f'hx-get="/backups/{backup.pk}/" hx-trigger="every 2s"')
    assert 'id="backup-facts"' in body and 'id="job-' in body

    # It ends: the last answer (286) carries the buttons its end makes possible.
    Job.objects.filter(pk=backup.job_id).update(status=Job.Status.SUCCEEDED)
    Backup.objects.filter(pk=backup.pk).update(key="shop_db/shop_db-1.tar.zst", sha256="b" * 64)
    ended = client.get(f"/backups/{backup.pk}/", **HTMX)
    body = ended.content.decode()
    assert ended.status_code == 286 and "hx-get" not in body
    for button in ("Download", "Restore to a new volume", "Verify", "Delete…"):
        assert button in body, button


def test_verify_from_the_backup_page_is_shown_and_followed_on_that_page(client_for):
    backup = _backup()
    client = client_for("Operator")

    response = client.post(f"/backups/{backup.pk}/verify/", follow=True, **HTMX)

    body = response.content.decode()
    job = Job.objects.get(kind="backup_verify")
    assert response.redirect_chain == [(f"/backups/{backup.pk}/", 302)]
    assert response.status_code == 200 and "<html" not in body
    assert f'hx-get="/backups/{backup.pk}/" hx-trigger="every 2s"' in body
    follow_up = body[body.index('id="backup-follow-up"'):]
    assert f'id="job-{job.pk}"' in follow_up and 'data-job-status="queued"' in follow_up
    assert "Verification queued" in body
    # The verification ends: its result is on the page, and the page stops polling.
    verified_at = timezone.now()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    Backup.objects.filter(pk=backup.pk).update(verified_at=verified_at)
    ended = client.get(f"/backups/{backup.pk}/", **HTMX)
    assert ended.status_code == 286 and verified_at.strftime("%Y-%m-%d %H:%M:%S") in ended.content.decode()


def test_the_backups_list_polls_fast_only_while_something_is_active(client_for):
    client = client_for("Viewer")
    done = _backup()

    idle = client.get("/backups/", **HTMX).content.decode()
    assert 'hx-trigger="every 15s"' in idle and "every 2s" not in idle and "every 5s" not in idle

    running = _backup(status=Job.Status.RUNNING, key="", sha256="")
    busy = client.get("/backups/", **HTMX).content.decode()
    assert busy.lstrip().startswith('<div id="backup-table"') and 'hx-trigger="every 2s"' in busy
    # the in-progress card is inside the polled list, and its Cancel comes back to the list
    assert f'id="job-{running.job_id}"' in busy and 'name="next" value="/backups/"' in busy
    assert done.pk != running.pk
