"""The policy form in a browser at desktop and phone widths: the live preview follows the
selection without a reload, the picker adds volumes, the time zone is typed, not scrolled."""

import pytest

from tests import dockercli
from volumes.services import mirror_sync

# Real volumes: an event watcher running in this session marks rows the engine lacks as gone.
pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1440, 390])
def test_the_policy_form_previews_its_selection_live(page, login, width):
    team = dockercli.unique_name("team")
    shop_db = dockercli.create_volume(labels={"team": team})
    shop_cache = dockercli.create_volume(labels={"team": team})
    blog_db = dockercli.create_volume()
    mirror_sync()
    page.set_viewport_size({"width": width, "height": 900})
    login("Admin")
    page.goto("/policies/new/")
    page.evaluate("window.__sameDocument = true")
    preview = page.locator("#selection-preview")

    page.select_option("select[name=selector_kind]", "label")
    page.fill("textarea[name=selector_value]", f"team={team}")
    page.locator("#selection-preview", has_text="Matches 2 volumes now").wait_for()
    assert shop_db[:30] in preview.inner_text() and shop_cache[:30] in preview.inner_text()
    assert blog_db[:30] not in preview.inner_text()

    page.select_option("select[name=selector_kind]", "names")
    page.fill("textarea[name=selector_value]", "")
    page.locator("#selection-preview", has_text="List at least one volume name").wait_for()
    page.click("details.volume-picker summary")
    page.check(f"input[name=pick][value='{blog_db}']")
    page.locator("#selection-preview", has_text="Matches 1 volume now").wait_for()
    assert blog_db[:30] in preview.inner_text()
    assert page.evaluate("window.__sameDocument") is True  # htmx swapped it, no reload

    assert page.locator("select[name=timezone]").count() == 0
    assert page.locator("input[name=timezone][list=timezones]").count() == 1
    assert page.locator("datalist#timezones option[value='Europe/Berlin']").count() == 1
    # Nothing on the form makes the page scroll sideways, on a phone either.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    page.fill("input[name=name]", "picked")
    page.fill("input[name=timezone]", "Europe/Berlin")
    page.click("form.policy-form button[type=submit]")
    page.wait_for_url("**/policies/*/")
    assert blog_db in page.inner_text("#selected-volumes")
