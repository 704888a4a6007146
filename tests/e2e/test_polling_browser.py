"""One polling convention, in a browser: the backup page follows its own backup, shows the
buttons its end makes possible, and a Verify pressed there is followed there, with the new
verified time, without a reload. Real worker, real engine."""

import pytest

from backups.models import Backup
from jobs.models import Job
from tests import dockercli
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_verify_on_a_backup_page_updates_the_verified_time_on_that_page(page, login, celery_worker):
    volume = dockercli.create_volume()
    dockercli.fill_volume(volume, "head -c 2000000 /dev/urandom > /data/blob.bin")
    mirror_sync()
    login("Operator")

    page.goto(f"/volumes/{volume}/")
    page.click("form.backup-now button[type=submit]")
    page.wait_for_url("**/backups/*/")
    page.evaluate("window.__sameDocument = true")
    # The buttons are in the page's polled region: they appear when the backup ends.
    verify = page.locator("#backup-verify button")
    verify.wait_for(timeout=60_000)
    page.locator('#backup-facts[data-status="succeeded"]').wait_for(timeout=10_000)
    backup = Backup.objects.get(volume_name=volume)
    before = page.inner_text("#backup-verified")
    assert before.startswith("yes, ")
    page.wait_for_timeout(1100)  # the time shown has whole seconds: let the next one differ

    verify.click()
    page.locator("#backup-follow-up .job").wait_for(timeout=10_000)
    page.locator('#backup-follow-up .job[data-job-status="succeeded"]').wait_for(timeout=60_000)
    page.wait_for_function(
        "before => document.querySelector('#backup-verified').innerText !== before", arg=before, timeout=10_000
    )

    assert page.evaluate("window.__sameDocument") is True  # swapped in by htmx, never reloaded
    assert page.url.endswith(f"/backups/{backup.pk}/")
    backup.refresh_from_db()
    assert page.inner_text("#backup-verified") == f"yes, {backup.verified_at:%Y-%m-%d %H:%M:%S} UTC"
    assert Job.objects.get(kind="backup_verify", params__backup=backup.pk).status == Job.Status.SUCCEEDED
    # Nothing is active any more: the page stopped polling (its region has no hx-get).
    assert page.get_attribute("#backup-status", "hx-get") is None
