"""At 390 px (a phone) and 1440 px no main page scrolls sideways: the navigation folds
behind a Menu button, wide tables scroll inside their own box. Real engine, real browser."""

import pytest

from policies import services as policy_services
from policies.models import BackupPolicy
from tests import dockercli
from tests.restores.conftest import run_backup_now
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.django_db(transaction=True)]

PAGES = ["/", "/volumes/", "/volumes/{volume}/", "/containers/", "/backups/", "/backups/{backup}/", "/restores/",
         "/policies/", "/policies/{policy}/", "/risks/", "/graph/", "/audit/", "/jobs/{job}/"]


@pytest.fixture
def world(settings, tmp_path):
    """Volumes with long names and labels, a container mounting two of them, a backup, a policy."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    project = f"shop{dockercli.RUN_ID}"
    labels = {"com.docker.compose.project": project, "com.docker.compose.volume": "database-primary-storage"}
    volume = dockercli.create_volume(dockercli.unique_name("a-rather-long-database-volume-name"), labels=labels)
    other = dockercli.create_volume(labels={"com.docker.compose.project": project})
    dockercli.fill_volume(volume, "head -c 300000 /dev/urandom > /data/blob.bin")
    dockercli.run_container(f"{volume}:/var/lib/postgresql/data", f"{other}:/cache:ro",
                            labels={"com.docker.compose.project": project, "com.docker.compose.service": "db"})
    mirror_sync()
    backup = run_backup_now(volume)
    policy = policy_services.policy_save(policy=BackupPolicy(
        name="nightly-compose-project-backups", selector_kind="compose", selector_value=project,
        cron="0 2 * * *", keep_last=3))
    return {"volume": volume, "backup": backup.pk, "policy": policy.pk, "job": backup.job_id}


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


# For the failure message: the innermost elements that reach past the window's right edge.
CULPRITS = """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right
  > window.innerWidth + 1 && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 3).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.'))"""


@pytest.mark.parametrize("width", [390, 1440])
def test_no_main_page_scrolls_sideways(page, login, world, width):
    page.set_viewport_size({"width": width, "height": 900})
    login("Admin")
    too_wide = {}
    for path in PAGES:
        url = path.format(**world)
        page.goto(url)
        page.wait_for_load_state("networkidle")
        if (extra := overflow(page)) > 0:
            too_wide[url] = (extra, page.evaluate(CULPRITS))
    assert too_wide == {}, f"pages wider than {width} px (by px, culprits): {too_wide}"


def test_on_a_phone_the_navigation_folds_behind_a_menu_button(page, login, world):
    page.set_viewport_size({"width": 390, "height": 800})
    login("Operator")
    page.goto("/volumes/")
    nav = page.locator("#main-nav")
    assert not nav.is_visible()
    assert page.locator(".topbar").bounding_box()["height"] < 80  # one row, not nine
    page.click(".menu-toggle")
    assert nav.is_visible()
    page.click("#main-nav >> text=Backups")
    page.wait_for_url("**/backups/")
    # At 1440 px the links are listed and the button is not shown.
    page.set_viewport_size({"width": 1440, "height": 800})
    assert page.locator("#main-nav").is_visible() and not page.locator(".menu-toggle").is_visible()


def test_on_a_phone_the_graph_keeps_its_size_and_scrolls_inside_its_box(page, login, world):
    page.set_viewport_size({"width": 390, "height": 800})
    login("Viewer")
    page.goto("/graph/")
    svg = page.locator("svg.sharing-graph")
    drawn = svg.bounding_box()["width"]
    assert drawn == float(svg.get_attribute("width"))  # not shrunk to an unreadable thumbnail
    box = page.locator(".graph-live").first
    assert box.evaluate("e => e.scrollWidth > e.clientWidth")  # it scrolls, the page does not
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
