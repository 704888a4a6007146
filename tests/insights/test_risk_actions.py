"""Risks come with their fix: each finding on /risks/ links to its action (back up now, add
to a policy, open the prune preview) for the roles that may use it; the action's own page
checks the role again."""

import pytest
from django.utils import timezone

from volumes.models import EngineStatus, Volume

pytestmark = pytest.mark.django_db
ANON = "ab" * 32


@pytest.fixture
def risky():
    EngineStatus.objects.create(last_success_at=timezone.now())
    Volume.objects.create(name="orders", size_bytes=5_000_000, search_text="orders")
    Volume.objects.create(name=ANON, anonymous=True, size_bytes=5_000_000, search_text=ANON)


def _row(page: str, subject: str, kind: str) -> str:
    section = page[page.index(f'data-kind="{kind}"'):]
    row = section[section.index(f'data-subject="{subject}"'):]
    return row[:row.index("</tr>")]


def test_an_admin_gets_every_fix_beside_its_finding(client_for, risky):
    page = client_for("Admin").get("/risks/").content.decode()
    never = _row(page, "orders", "no-backup")
    assert 'href="/volumes/orders/backup/"' in never and 'href="/policies/new/?volume=orders"' in never
    assert 'data-action="prune"' not in never
    orphan = _row(page, ANON, "anonymous-data")
    assert 'data-action="prune"' in orphan and 'href="/volumes/prune/"' in orphan


def test_an_operator_may_back_up_but_not_write_policies_or_prune(client_for, risky):
    page = client_for("Operator").get("/risks/").content.decode()
    row = _row(page, ANON, "anonymous-data")
    assert 'data-action="backup"' in row
    assert 'data-action="policy"' not in row and 'data-action="prune"' not in row


def test_a_viewer_sees_the_findings_without_buttons(client_for, risky):
    page = client_for("Viewer").get("/risks/").content.decode()
    assert "orders" in page and "data-action=" not in page


def test_add_to_a_policy_starts_a_policy_for_that_volume(client_for, risky):
    body = client_for("Admin").get("/policies/new/", {"volume": "orders"}).content.decode()
    assert '<option value="names" selected>' in body
    assert 'value="orders" id="id_pick_' in body and "checked" in body.split('value="orders" id=')[1][:60]
