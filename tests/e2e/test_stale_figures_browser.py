"""The overview after a change, in a browser, where counting its figures is slow: the page
comes at once with the last figures marked stale, and its htmx swaps the recounted ones in
without a reload (insights.snapshot.counted)."""

import re

import pytest
from django.core.cache import cache, caches

from volumes.models import Volume

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024
FIGURE = '[data-figure="total"] .figure'


@pytest.fixture
def own_host():
    """A host of this test's own for its made-up volumes: a session worker's sync of the
    default host (after another test process's engine events) would mark them gone."""
    from hosts.models import Host
    from tests import dockercli

    return Host.objects.create(name=f"fig{dockercli.RUN_ID}".replace("_", "-")[:40])


def volume(host, name: str, size: int) -> Volume:
    from hosts import refs

    return Volume.objects.create(host=host, name=refs.make_ref(host.name, name), size_bytes=size,
                                 labels={"team": host.name})


def team_viewer(login, host):
    """A team Viewer whose team has this test's volumes only (by their label): the figures
    then count nothing that another test process's engine events bring into the mirror."""
    from accounts import teams
    from accounts.models import Team, TeamMembership

    team = Team.objects.create(name=host.name)
    teams.rule_add(team=team, kind="label", value=f"team={host.name}")
    user = login(None)
    TeamMembership.objects.create(team=team, user=user, role="Viewer")
    return user


def test_the_stale_figures_are_replaced_by_the_recount_without_a_reload(page, login, settings, own_host):
    settings.FIGURES_SLOW_MS = 0  # every counting is "slow": after a change the last figures come first
    cache.clear(), caches["figures"].clear()  # the second is a table no flush empties
    volume(own_host, "first", 10 * MB)
    team_viewer(login, own_host)
    page.goto("/")
    assert page.inner_text(FIGURE) == "10\xa0MiB"

    volume(own_host, "second", 20 * MB)
    response = page.goto("/")
    served = response.text()
    assert "data-stale" in served  # what the server sent first: the last figures, marked
    assert re.search(r'data-figure="total">\s*<h2>Volume space</h2>\s*<p class="figure">10\xa0MiB<', served)
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(f"document.querySelector('{FIGURE}').innerText.includes('30')", timeout=10_000)
    assert page.inner_text(FIGURE) == "30\xa0MiB"
    assert page.locator("[data-stale]").count() == 0
    assert page.get_attribute("#overview", "hx-trigger") == "every 15s"
    assert page.evaluate("window.__sameDocument") is True  # swapped in by htmx, never reloaded
    cache.clear(), caches["figures"].clear()
