"""A policy's runs and the deliveries under the polling convention (jobs/polling.py)."""

import pytest
from django.urls import reverse


pytestmark = pytest.mark.django_db


@pytest.fixture
def policy(make_policy):
    return make_policy(selector_value="team=shop")


def test_a_policys_runs_poll_slowly_when_none_is_active(client_for, policy):
    url = reverse("policy_detail", args=[policy.pk])
    body = client_for("Viewer").get(url, HTTP_HX_REQUEST="true").content.decode()
    assert f'id="policy-runs" data-poll-region="{url}" hx-get="{url}" hx-trigger="every 15s"' in body
    assert "every 10s" not in body and "every 2s" not in body


def test_deliveries_poll_slowly_when_none_is_pending(client_for):
    body = client_for("Admin").get(reverse("notification_settings"), HTTP_HX_REQUEST="true").content.decode()
    assert 'id="deliveries"' in body and 'hx-trigger="every 15s"' in body
