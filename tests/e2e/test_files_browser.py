"""An Operator opens a real backup's files (its index made by the backup, on a real worker),
enters a folder without a reload, searches, ticks a file and reaches the restore form with
that file selected."""

import pytest

from backups.models import Backup
from backups.services import backup_start
from tests import dockercli
from tests.conftest import wait_for
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_operator_browses_searches_and_restores_a_selected_file(page, login, celery_worker):
    volume = dockercli.create_volume()
    dockercli.fill_volume(volume, "mkdir -p /data/app/conf /data/logs && echo 'port: 80' > /data/app/conf/site.yml && "
                                  "echo hi > /data/app/README && echo x > /data/logs/today.log")
    mirror_sync()
    backup = backup_start(volume_name=volume)
    wait_for(lambda: Backup.objects.get(pk=backup.pk).status == "succeeded", timeout=120, message="the backup")
    login("Operator")

    page.goto(f"/backups/{backup.pk}/")
    page.click("#backup-files")
    page.wait_for_url(f"**/backups/{backup.pk}/files/")
    assert page.locator("#file-listing tr[data-path]").evaluate_all("rows => rows.map(r => r.dataset.path)") == [
        "app", "logs"]
    page.evaluate("window.__sameDocument = true")

    page.click("#file-listing a.folder:text('app/')")
    page.locator('#file-listing tr[data-path="app/conf"]').wait_for()
    assert page.evaluate("window.__sameDocument") is True  # swapped by htmx, not reloaded
    assert page.url.endswith("?path=app")  # and the address says where we are
    assert "app" in page.inner_text("#file-crumbs")

    page.fill("#files-search input[name=q]", "SITE")
    page.click("#files-search button[type=submit]")
    page.locator('#file-listing tr[data-path="app/conf/site.yml"]').wait_for()
    assert page.locator("#file-listing tr[data-path]").count() == 1

    page.check('#file-listing input[name=paths][value="app/conf/site.yml"]')
    page.click("#restore-selected")
    page.wait_for_url(f"**/backups/{backup.pk}/restore/?paths=app%2Fconf%2Fsite.yml")
    assert "app/conf/site.yml" in page.inner_text("#selected-paths")
    assert page.locator('#restore-new-form input[type=hidden][name=paths]').get_attribute("value") == \
        "app/conf/site.yml"
