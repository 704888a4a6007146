"""A person's view of the sharing graph: open it, follow nodes to their pages, see it update."""

import pytest

from tests import dockercli
from volumes import services

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def test_graph_links_nodes_to_their_pages_and_updates_live(page, login):
    volume = dockercli.create_volume(labels={"com.docker.compose.project": "e2eshop"})
    ctr = dockercli.run_container(f"{volume}:/data", labels={"com.docker.compose.project": "e2eshop",
                                                             "com.docker.compose.service": "db"})
    services.mirror_sync()
    login("Viewer")

    page.goto("/graph/")
    page.evaluate("window.__sameDocument = true")
    node = page.locator(f'a[data-node="volume:{volume}"]')
    assert node.is_visible()
    assert page.locator('[data-project="e2eshop"]').count() == 1

    # Live: a volume created on the engine appears without a reload.
    late = dockercli.create_volume()
    services.mirror_sync()
    page.locator(f'a[data-node="volume:{late}"]').wait_for(timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True

    page.locator(f'a[data-node="volume:{volume}"]').click()
    page.wait_for_url(f"**/volumes/{volume}/")
    assert volume in page.inner_text("h1")
    assert page.locator(f'a[data-node="container:{ctr}"]').count() == 1  # the page's neighbourhood

    page.goto("/graph/")
    page.locator(f'a[data-node="container:{ctr}"]').click()
    page.wait_for_url(f"**/containers/?q={ctr}")
    assert page.locator(f'tr[data-container="{ctr}"]').is_visible()

    # ...and from the container's row to its own neighbourhood.
    page.locator(f'a[data-neighbourhood="{ctr}"]').click()
    page.wait_for_url(f"**/graph/?container={ctr}")
    assert page.locator(f'a[data-node="volume:{volume}"]').count() == 1
    assert page.locator(f'a[data-node="volume:{late}"]').count() == 0
