"""An Operator backs up a volume from its page, watches it finish without reloading, finds
it listed; then selects volumes on the list (the selection survives the list's polling)
and backs them up together. Real worker, real engine."""

import pytest

from backups.models import Backup
from tests import dockercli
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_operator_backs_up_a_volume_and_sees_it_listed(page, login, celery_worker):
    volume = dockercli.create_volume()
    dockercli.fill_volume(volume, "head -c 50000000 /dev/urandom > /data/blob.bin && echo hi > /data/hi.txt")
    other = dockercli.create_volume()
    mirror_sync()
    login("Operator")

    page.goto(f"/volumes/{volume}/")
    assert "No backups yet" in page.inner_text("#volume-backups")
    page.click("form.backup-now button[type=submit]")
    page.wait_for_url("**/backups/*/")
    page.evaluate("window.__sameDocument = true")
    job = page.locator(".job").first
    assert job.get_attribute("data-job-status") in ("queued", "running", "succeeded")
    page.locator('#backup-facts[data-status="succeeded"]').wait_for(timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True  # followed by htmx polling, not reloaded
    page.locator('.job[data-job-status="succeeded"]').wait_for(timeout=10_000)
    backup = Backup.objects.get(volume_name=volume)
    assert backup.sha256 in page.inner_text("#backup-facts")

    page.click("nav >> text=Backups")
    row = page.locator(f'tr[data-backup="{backup.pk}"]')
    assert "succeeded" in row.inner_text() and "verified" in row.inner_text()
    assert volume[:40] in row.inner_text()

    page.goto(f"/volumes/?q={dockercli.RUN_ID}")  # this run's volumes: another run's may fill page 1
    page.check(f'input[name=volume][value="{other}"]')
    page.wait_for_timeout(3500)  # the table polls every 3 s: the tick must survive it
    assert page.is_checked(f'input[name=volume][value="{other}"]')
    page.click("text=Back up selected…")
    page.wait_for_url("**/backups/bulk/?volume=*")
    assert other in page.inner_text("main")
    page.click("button:has-text('Back up 1 volume')")
    page.wait_for_url("**/backups/")
    assert "Queued 1 backup" in page.inner_text(".messages")
    page.locator(f'#backup-table tr[data-status="succeeded"]:has-text("{other[:40]}")').wait_for(timeout=60_000)
