"""An Operator restores a backup into a new volume from its row on the backups list and
watches it finish without reloading. Real worker, real engine, real browser."""

import pytest

from restores.models import Restore
from tests import dockercli
from tests.restores.conftest import listing, run_backup_now

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_operator_restores_a_backup_into_a_new_volume_from_the_list(page, login, celery_worker, make_volume):
    source = make_volume("mkdir /data/site && head -c 30000000 /dev/urandom > /data/site/blob && "
                         "echo '<h1>hi</h1>' > /data/site/index.html && chown -R 101:101 /data/site",
                         labels={"app": "web"})
    backup = run_backup_now(source)
    target = dockercli.unique_name("from-browser")
    login("Operator")

    page.goto("/backups/")
    page.locator(f'tr[data-backup="{backup.pk}"] a.restore-new').click()
    page.wait_for_url(f"**/backups/{backup.pk}/restore/")
    assert page.input_value('input[name="label_key"] >> nth=0') == "app"
    page.fill('input[name="name"]', target)
    page.click("#restore-new-form button[type=submit]")
    page.wait_for_url("**/restores/*/")
    page.evaluate("window.__sameDocument = true")
    assert page.locator(".job").first.get_attribute("data-job-status") in ("queued", "running", "succeeded")

    page.locator('#restore-facts[data-status="succeeded"]').wait_for(timeout=60_000)
    page.locator('.job[data-job-status="succeeded"]').wait_for(timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # followed by htmx polling, not reloaded
    assert f"Volume {target} was created" in page.inner_text("#restore-outcome")
    restore = Restore.objects.get(volume_name=target)
    assert restore.status == "succeeded" and restore.created_by.username.startswith("operator")
    assert listing(target)["entries"] == listing(source)["entries"]
    assert '"app":"web"' in dockercli.docker("volume", "inspect", "-f", "{{json .Labels}}", target)
