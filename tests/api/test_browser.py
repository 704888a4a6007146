"""In a browser: make a token on the tokens page (shown once), and the Swagger docs page
renders every operation with assets served by Cargohold itself (no CDN is reachable)."""

from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_token_is_shown_once_then_the_docs_page_lists_the_operations(page, login, live_server):
    from django.test import Client

    outside = []

    def only_local(route):
        host = urlparse(route.request.url).hostname
        if host not in ("localhost", "127.0.0.1"):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", only_local)
    login("Operator")
    page.goto("/accounts/tokens/")
    page.fill("input[name=name]", "laptop script")
    page.check("input[name=read_only]")
    page.click("form.stack button[type=submit]")
    raw = page.inner_text("#new-token [data-token]").strip()
    assert raw.startswith("chk_")
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/v1/volumes/").status_code == 200
    page.goto("/accounts/tokens/")
    assert raw not in page.content() and "read-only" in page.inner_text("table.grid")

    page.goto("/api/docs/")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    assert page.locator(".opblock").count() >= 19
    assert "/api/v1/backups/" in page.inner_text(".swagger-ui")
    assert outside == []
