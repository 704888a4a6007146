"""A person's view: log in, then see the engine's changes arrive without reloading."""

import pytest

from tests import dockercli

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_volume_created_with_the_cli_appears_on_the_list_without_reload(page, login, engine_watcher):
    login("Viewer")
    page.goto(f"/volumes/?q={dockercli.RUN_ID}")  # this run's volumes: another run's may fill page 1
    page.evaluate("window.__sameDocument = true")
    name = dockercli.unique_name("live")

    dockercli.create_volume(name, labels={"purpose": "<b>live</b>"})

    row = page.locator(f'tr[data-volume="{name}"]')
    row.wait_for(timeout=20_000)
    assert "purpose=<b>live</b>" in row.inner_text()
    # Same document: the table was swapped in by htmx, not by a reload.
    assert page.evaluate("window.__sameDocument") is True

    dockercli.docker("volume", "rm", name)
    row.wait_for(state="detached", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True


def test_container_started_with_the_cli_shows_up_as_a_user_of_the_volume(page, login, engine_watcher):
    volume = dockercli.create_volume()
    login("Viewer")
    page.goto(f"/volumes/?q={dockercli.RUN_ID}")  # this run's volumes: another run's may fill page 1
    page.locator(f'tr[data-volume="{volume}"]').wait_for(timeout=20_000)

    ctr = dockercli.run_container(f"{volume}:/data:ro")

    page.locator(f'tr[data-volume="{volume}"]', has_text="1 container").wait_for(timeout=20_000)
    page.click(f"text={volume}")
    page.wait_for_url(f"**/volumes/{volume}/")
    assert ctr in page.inner_text("main")
    assert "read-only" in page.inner_text("main")


def test_login_page_rejects_wrong_password(page, make_user):
    user = make_user("Viewer")
    page.goto(f"/volumes/?q={dockercli.RUN_ID}")  # this run's volumes: another run's may fill page 1
    page.wait_for_url("**/accounts/login/**")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("main")
