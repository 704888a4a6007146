"""The risks page in a browser: a large group shows its first 10 findings, and its
"Show N more" fetches the rest when opened (htmx), without a reload."""

import pytest

from volumes.models import Volume

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024


def test_opening_show_more_fetches_the_rest_of_the_group(page, login):
    from hosts import refs
    from hosts.models import Host
    from tests import dockercli

    # On a host of their own: a session worker's sync of the default host (after another
    # test process's engine events) would mark these made-up volumes gone.
    host = Host.objects.create(name=f"risk{dockercli.RUN_ID}".replace("_", "-")[:40])
    for i in range(25):  # anonymous, holding data, unused: 25 findings of one kind
        Volume.objects.create(host=host, name=refs.make_ref(host.name, f"{i:064x}"), anonymous=True, size_bytes=5 * MB)
    login("Viewer")
    page.goto(f"/risks/?host={host.name}")
    group = page.locator('section[data-kind="anonymous-data"]')
    assert group.locator("tr[data-subject]").count() == 10  # the rest not sent yet
    page.evaluate("window.__sameDocument = true")

    group.locator("details summary").click()
    group.locator("details tr[data-subject]").nth(14).wait_for(timeout=10_000)

    assert group.locator("details tr[data-subject]").count() == 15
    assert group.locator("tr[data-subject]").count() == 25
    assert page.evaluate("window.__sameDocument") is True
