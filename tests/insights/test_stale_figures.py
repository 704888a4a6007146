"""After a change, where counting the overview's figures is slow, the page shows the last
figures marked with their time and asks for a recount at once (insights.snapshot.counted)."""

import re

import pytest
from django.core.cache import cache, caches

from insights import snapshot
from volumes.models import Volume

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
MB = 1024 * 1024


@pytest.fixture
def slow(settings):
    """Every counting counts as slow; both caches start empty (the process's outlives a test)."""
    settings.FIGURES_SLOW_MS = 0
    cache.clear(), caches["figures"].clear()
    yield
    cache.clear(), caches["figures"].clear()


def volume_space(page: str) -> str:
    return re.search(r'data-figure="total">\s*<h2>Volume space</h2>\s*<p class="figure">([^<]+)<', page).group(1)


def test_after_a_change_the_page_shows_the_last_figures_stale_and_the_recount_the_new_ones(client_for, slow):
    Volume.objects.create(name="first", size_bytes=10 * MB)
    client = client_for("Viewer")
    page = client.get("/").content.decode()
    assert volume_space(page) == "10\xa0MiB" and "data-stale" not in page

    Volume.objects.create(name="second", size_bytes=20 * MB)
    page = client.get("/").content.decode()
    assert volume_space(page) == "10\xa0MiB"  # the last figures, not counted again
    assert "data-stale" in page and "before the latest change: counting again" in page
    assert 'hx-get="/?recount=1" hx-trigger="load, every 15s"' in page and 'aria-busy="true"' in page

    fresh = client.get("/?recount=1", **HTMX).content.decode()
    assert fresh.lstrip().startswith('<div id="overview"') and "<html" not in fresh
    assert volume_space(fresh) == "30\xa0MiB" and "data-stale" not in fresh and 'hx-trigger="every 15s"' in fresh
    # Counted now: the next view reuses them.
    assert volume_space(client.get("/").content.decode()) == "30\xa0MiB"


@pytest.mark.parametrize("why", ["the counting was quick", "the last figures are too old"])
def test_then_the_figures_are_counted_again_in_the_request(client_for, slow, settings, monkeypatch, why):
    if why == "the counting was quick":
        settings.FIGURES_SLOW_MS = 100_000  # no counting is that slow
    else:
        monkeypatch.setattr(snapshot, "STALE_SECONDS", 0)  # kept for no time at all
    Volume.objects.create(name="first", size_bytes=10 * MB)
    client = client_for("Viewer")
    client.get("/")
    Volume.objects.create(name="second", size_bytes=20 * MB)
    page = client.get("/").content.decode()
    assert volume_space(page) == "30\xa0MiB" and "data-stale" not in page


def test_one_viewers_last_figures_are_never_anothers(client_for, make_user, slow):
    """A team Operator's last figures are theirs: an Admin after a change counts their own
    (the protection summary, the same for everyone, may still be the shared stale one)."""
    from django.test import Client

    from accounts import teams
    from accounts.models import Team, TeamMembership

    Volume.objects.create(name="shop_db", size_bytes=10 * MB, labels={"team": "shop"})
    Volume.objects.create(name="other", size_bytes=500 * MB)
    team = Team.objects.create(name="shop")
    teams.rule_add(team=team, kind="label", value="team=shop")
    user = make_user(None, "shop-operator")
    TeamMembership.objects.create(team=team, user=user, role="Operator")
    operator = Client()
    operator.force_login(user)
    assert volume_space(operator.get("/").content.decode()) == "10\xa0MiB"
    Volume.objects.create(name="more", size_bytes=1 * MB)
    page = client_for("Admin").get("/").content.decode()
    assert volume_space(page) == "511\xa0MiB"
    page = operator.get("/").content.decode()
    assert volume_space(page) == "10\xa0MiB" and "data-stale" in page  # theirs, stale


def test_the_recount_needs_the_role_and_works_without_script_too(client, client_for, slow):
    assert client.get("/?recount=1", **HTMX).status_code in (302, 403)
    Volume.objects.create(name="first", size_bytes=10 * MB)
    viewer = client_for("Viewer")
    viewer.get("/")
    Volume.objects.create(name="second", size_bytes=20 * MB)
    stale = viewer.get("/").content.decode()
    assert '<noscript> <a href="/?recount=1">Count them now</a></noscript>' in stale
    page = viewer.get("/?recount=1").content.decode()  # the link: the whole page, counted
    assert "<html" in page and "data-stale" not in page and volume_space(page) == "30\xa0MiB"


def test_a_change_of_what_the_viewer_may_see_is_never_answered_with_the_old_figures(client_for, make_user, slow):
    """An Admin made a team Operator: the figures kept for their old scope are not theirs."""
    from django.test import Client

    from accounts import teams
    from accounts.models import Team, TeamMembership

    Volume.objects.create(name="shop_db", size_bytes=10 * MB, labels={"team": "shop"})
    Volume.objects.create(name="other", size_bytes=500 * MB)
    user = make_user("Admin", "was-admin")
    client = Client()
    client.force_login(user)
    assert volume_space(client.get("/").content.decode()) == "510\xa0MiB"

    team = Team.objects.create(name="shop")
    teams.rule_add(team=team, kind="label", value="team=shop")
    user.groups.set([])
    TeamMembership.objects.create(team=team, user=user, role="Operator")
    page = client.get("/").content.decode()
    assert volume_space(page) == "10\xa0MiB" and "data-stale" not in page and ">other<" not in page


def test_figures_another_process_kept_for_this_very_state_are_fresh(client_for, slow):
    Volume.objects.create(name="first", size_bytes=10 * MB)
    client = client_for("Viewer")
    client.get("/")
    cache.clear()  # this process forgets; the figures table still has them, for this state
    page = client.get("/").content.decode()
    assert volume_space(page) == "10\xa0MiB" and "data-stale" not in page


def test_after_a_restart_the_last_figures_are_still_there(client_for, slow):
    """The last figures live in the database (the `figures` cache): a web process that has
    just started, or another one, shows them at once, stale, and recounts."""
    Volume.objects.create(name="first", size_bytes=10 * MB)
    client = client_for("Viewer")
    client.get("/")
    Volume.objects.create(name="second", size_bytes=20 * MB)
    cache.clear()  # the process's own cache, as after a restart
    page = client.get("/").content.decode()
    assert volume_space(page) == "10\xa0MiB" and "data-stale" in page


def test_the_risks_page_after_a_change_shows_the_last_findings_stale_and_the_recount_the_new_ones(client_for, slow):
    first, second = f'data-subject="{"a" * 64}"', f'data-subject="{"b" * 64}"'
    Volume.objects.create(name="a" * 64, anonymous=True, size_bytes=5 * MB)
    client = client_for("Viewer")
    page = client.get("/risks/").content.decode()
    assert first in page and "data-stale" not in page

    Volume.objects.create(name="b" * 64, anonymous=True, size_bytes=5 * MB)
    page = client.get("/risks/").content.decode()
    assert first in page and second not in page and "data-stale" in page and "looking again" in page
    assert 'hx-get="/risks/?recount=1" hx-trigger="load, every 15s"' in page

    fresh = client.get("/risks/", {"recount": "1"}, **HTMX).content.decode()
    assert fresh.lstrip().startswith('<div id="risks"') and "<html" not in fresh
    assert first in fresh and second in fresh and "data-stale" not in fresh
