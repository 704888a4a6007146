"""An Admin creates a volume, sees it on the list, and removes it by typing its name (real worker)."""

import json

import pytest

from tests import dockercli

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_create_see_it_on_the_list_then_remove_it(page, login, celery_worker):
    name = dockercli.unique_name("web")
    label_key, _, label_value = dockercli.TEST_LABEL.partition("=")
    login("Admin")

    page.goto(f"/volumes/?q={dockercli.RUN_ID}")  # this run's volumes: another run's may fill page 1
    page.click("text=New volume")
    page.wait_for_url("**/volumes/new/")
    page.fill("input[name=name]", name)
    page.click("button[data-preset=tmpfs]")  # the script fills the option rows in place
    assert page.input_value("table[data-rows=opt] tr:nth-child(1) input[name=opt_value]") == "tmpfs"
    assert page.input_value("table[data-rows=opt] tr:nth-child(3) input[name=opt_value]") == "size=100m"
    page.fill("table[data-rows=label] tr:nth-child(1) input[name=label_key]", label_key)
    page.fill("table[data-rows=label] tr:nth-child(1) input[name=label_value]", label_value)
    page.click("button[name=create]")

    # The job runs in the worker; the page follows it and opens the new volume when it succeeded.
    page.wait_for_url(f"**/volumes/{name}/", timeout=30_000)
    assert "size=100m" in page.inner_text("main")
    options = json.loads(dockercli.docker("volume", "inspect", name))[0]["Options"]
    assert options == {"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}

    page.goto(f"/volumes/?q={dockercli.RUN_ID}")  # this run's volumes: another run's may fill page 1
    page.locator(f'tr[data-volume="{name}"]').wait_for()
    page.click(f'tr[data-volume="{name}"] a')
    page.wait_for_url(f"**/volumes/{name}/")
    page.click("text=Remove…")
    page.wait_for_url(f"**/volumes/{name}/remove/")
    page.fill("input[name=confirm_name]", name[:-1])  # a typo is refused
    page.click("button.danger")
    page.locator("text=does not match").wait_for()
    assert dockercli.volume_exists(name)
    page.fill("input[name=confirm_name]", name)
    page.click("button.danger")

    page.wait_for_url("**/volumes/", timeout=30_000)
    assert f"Removed volume {name}" in page.inner_text("main")
    assert page.locator(f'tr[data-volume="{name}"]').count() == 0
    assert not dockercli.volume_exists(name)
