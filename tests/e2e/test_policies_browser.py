"""An Admin writes a backup policy in the browser, sees when it will run, runs it now and
watches the run appear and succeed (real worker, real engine), without reloading."""

import pytest

from tests import dockercli
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_admin_creates_a_policy_sees_next_runs_and_a_run_appears(page, login, celery_worker):
    project = dockercli.unique_name("shop").lower()
    volume = dockercli.create_volume(labels={"com.docker.compose.project": project})
    dockercli.fill_volume(volume, "echo order-1 > /data/orders.txt")
    mirror_sync()
    login("Admin")

    page.goto("/policies/")
    page.click("text=New policy")
    page.fill("input[name=name]", "shop nightly")
    page.select_option("select[name=selector_kind]", "compose")
    page.fill("textarea[name=selector_value]", project)
    page.fill("input[name=cron]", "not a schedule")
    page.click("form.policy-form button[type=submit]")
    assert "five fields" in page.inner_text("form.policy-form")  # a form error, nothing saved

    page.fill("input[name=cron]", "30 2 * * *")
    page.fill("input[name=timezone]", "Europe/Berlin")
    page.fill("input[name=keep_daily]", "7")
    page.click("form.policy-form button[type=submit]")
    page.wait_for_url("**/policies/*/")
    assert "At 02:30" in page.inner_text("[data-cron-description]")
    next_runs = page.locator("#next-runs li").all_inner_texts()
    assert len(next_runs) == 5 and all("02:30 CE" in t for t in next_runs)  # CET or CEST
    assert volume in page.inner_text("#selected-volumes")

    page.evaluate("window.__sameDocument = true")
    page.click("button:has-text('Run now')")
    page.wait_for_load_state()
    row = page.locator(f'#policy-runs tr[data-volume="{volume}"]')
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-status") in ("queued", "running", "succeeded")
    page.evaluate("window.__sameDocument = true")  # the POST redirected: a new document
    page.locator(f'#policy-runs tr[data-volume="{volume}"][data-status="succeeded"]').wait_for(timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True  # polled in by htmx, not reloaded
    assert "manual" in row.inner_text() or "run now" in row.inner_text()
