"""The polling convention on the job page and for Cancel (jobs/polling.py): a page polls its
own status region, 286 when nothing on it is active; Cancel answers the page it was on."""

import pytest

from backups.models import Backup
from jobs.models import Job

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_job_page_polls_its_own_region_while_active_and_stops_when_ended(client_for):
    job = Job.objects.create(kind="backup", target="shop_db", status=Job.Status.RUNNING)
    client = client_for("Viewer")

    running = client.get(f"/jobs/{job.pk}/", **HTMX)
    body = running.content.decode()
    assert running.status_code == 200 and "<html" not in body
    assert f'id="job-status" data-poll-region="/jobs/{job.pk}/" hx-get="/jobs/{job.pk}/" hx-trigger="every 2s"' in body

    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    ended = client.get(f"/jobs/{job.pk}/", **HTMX)
    assert ended.status_code == 286
    assert 'data-job-status="succeeded"' in ended.content.decode() and "hx-get" not in ended.content.decode()


def _running_backup() -> Backup:
    job = Job.objects.create(kind="backup", target="shop_db", status=Job.Status.RUNNING)
    return Backup.objects.create(volume_name="shop_db", job=job)


def test_the_cancel_button_posts_back_to_the_page_it_is_on(client_for):
    backup = _running_backup()
    page = client_for("Operator").get(f"/backups/{backup.pk}/").content.decode()
    form = page[page.index(f'action="/jobs/{backup.job_id}/cancel/"'):]
    form = form[: form.index("</form>")]
    assert 'hx-target="closest [data-poll-region]"' in form
    assert f'name="next" value="/backups/{backup.pk}/"' in form


def test_cancel_with_htmx_answers_the_pages_region_so_the_poller_stays_on_the_page(client_for):
    backup = _running_backup()
    client = client_for("Admin")

    response = client.post(f"/jobs/{backup.job_id}/cancel/", {"next": f"/backups/{backup.pk}/"}, follow=True, **HTMX)

    body = response.content.decode()
    assert response.redirect_chain == [(f"/backups/{backup.pk}/", 302)]
    assert response.status_code == 200 and "<html" not in body  # the region, not the whole page
    # still running (asked to stop): the page's own URL keeps being polled, never the job's
    assert f'id="backup-status" data-poll-region="/backups/{backup.pk}/" hx-get="/backups/{backup.pk}/"' in body
    assert f'hx-get="/jobs/{backup.job_id}/"' not in body
    assert "Cancelling…" in body and "Cancel requested" in body
    assert Job.objects.get(pk=backup.job_id).cancel_requested


def test_cancelling_a_queued_job_ends_it_and_the_page_stops_polling(client_for):
    job = Job.objects.create(kind="backup", target="shop_db", status=Job.Status.QUEUED)
    backup = Backup.objects.create(volume_name="shop_db", job=job)

    response = client_for("Admin").post(f"/jobs/{job.pk}/cancel/", {"next": f"/backups/{backup.pk}/"},
                                        follow=True, **HTMX)

    assert response.status_code == 286
    body = response.content.decode()
    assert 'data-job-status="cancelled"' in body and "hx-get" not in body and 'id="backup-status"' in body


def test_cancel_never_follows_a_next_to_another_site(client_for):
    job = Job.objects.create(kind="backup", target="shop_db", status=Job.Status.RUNNING)
    response = client_for("Admin").post(f"/jobs/{job.pk}/cancel/", {"next": "https://evil.example/x"})
    assert response.status_code == 302 and response.headers["Location"] == f"/jobs/{job.pk}/"
