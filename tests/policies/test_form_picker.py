"""The policy form as a person meets it: a volume picker with a live preview, one error for
one problem, a searchable time zone; the volume page names its policies; Run now backups
say so."""

import pytest
from django.urls import reverse
from django.utils import timezone

from backups.models import Backup
from jobs.models import Job
from policies.models import BackupPolicy
from tests.policies.test_views import VALID
from volumes.models import Volume

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def volumes():
    for name, labels in [("shop_db", {"team": "shop"}), ("shop_cache", {"team": "shop"}), ("blog_db", {})]:
        Volume.objects.create(name=name, labels=labels, search_text=name)


def test_the_preview_lists_what_a_label_selection_matches(client_for, volumes):
    body = client_for("Admin").get(reverse("policy_preview"), {"selector_kind": "label", "selector_value": "team=shop"},
                                   HTTP_HX_REQUEST="true").content.decode()
    assert "Matches 2 volumes now" in body and "shop_db" in body and "shop_cache" in body
    assert "blog_db" not in body and "<html" not in body


def test_the_preview_names_picked_volumes_and_listed_ones_not_on_the_engine(client_for, volumes):
    body = client_for("Admin").get(reverse("policy_preview"), {"selector_kind": "names", "selector_value": "future_vol",
                                                               "pick": ["blog_db"]}).content.decode()
    assert "Matches 1 volume now" in body and "blog_db" in body
    assert 'data-preview="missing"' in body and "future_vol" in body


def test_the_preview_says_what_is_wrong_with_a_selection(client_for, volumes):
    body = client_for("Admin").get(reverse("policy_preview"), {"selector_kind": "label", "selector_value": "bad key!"})
    assert "Not a valid label key" in body.content.decode()


@pytest.mark.parametrize("role", ["Viewer", "Operator"])
def test_the_preview_is_for_those_who_write_policies(client_for, role):
    assert client_for(role).get(reverse("policy_preview"), {"selector_kind": "label"}).status_code == 403


def test_picked_volumes_are_saved_with_the_typed_names(client_for, volumes):
    response = client_for("Admin").post(reverse("policy_create"), {
        **VALID, "selector_kind": "names", "selector_value": "future_vol", "pick": ["shop_db", "blog_db"]})
    assert response.status_code == 302
    assert BackupPolicy.objects.get().selector_value.split("\n") == ["future_vol", "shop_db", "blog_db"]


def test_editing_a_names_policy_ticks_its_volumes_in_the_picker(client_for, volumes, make_policy):
    p = make_policy(selector_kind="names", selector_value="shop_db\nfuture_vol")
    body = client_for("Admin").get(reverse("policy_edit", args=[p.pk])).content.decode()
    assert 'value="shop_db" id="id_pick_' in body and "checked" in body.split('value="shop_db"')[1][:80]
    assert "future_vol</textarea>" in body
    assert "Matches 1 volume now" in body


def test_an_empty_selection_is_one_error_not_two(client_for):
    response = client_for("Admin").post(reverse("policy_create"), {**VALID, "selector_value": ""})
    assert response.context["form"].errors["selector_value"] == [
        "Enter a label selector: `key=value` or `key` (several separated by commas)."]
    assert response.content.decode().count("errorlist") == 1


def test_the_time_zone_is_a_searchable_text_field_not_a_600_entry_select(client_for):
    body = client_for("Admin").get(reverse("policy_create")).content.decode()
    assert 'name="timezone"' in body and 'list="timezones"' in body
    assert '<select name="timezone"' not in body
    assert '<datalist id="timezones">' in body and '<option value="Europe/Berlin">' in body


def test_the_volume_page_names_the_policies_that_cover_it(client_for, volumes, make_policy):
    p = make_policy("shop nightly", selector_value="team=shop")
    make_policy("blog only", selector_kind="names", selector_value="blog_db")
    body = client_for("Viewer").get("/volumes/shop_db/").content.decode()
    assert 'data-covered-by' in body and "shop nightly" in body and reverse("policy_detail", args=[p.pk]) in body
    assert "blog only" not in body
    Volume.objects.create(name="lonely", search_text="lonely")
    assert "No policy covers this volume" in client_for("Viewer").get("/volumes/lonely/").content.decode()


def test_run_now_backups_are_tagged_as_such_in_the_lists(client_for, volumes):
    vol = Volume.objects.get(name="shop_db")
    done = {"status": Job.Status.SUCCEEDED, "finished_at": timezone.now()}
    scheduled = Job.objects.create(kind="backup", target="shop_db", trigger="schedule", **done)
    run_now = Job.objects.create(kind="backup", target="shop_db", trigger="user", **done)
    Backup.objects.create(job=scheduled, volume=vol, volume_name="shop_db", origin="schedule", key="a")
    b = Backup.objects.create(job=run_now, volume=vol, volume_name="shop_db", origin="schedule", key="b")
    body = client_for("Viewer").get("/backups/").content.decode()
    assert body.count('data-origin="run-now"') == 1 and body.count('data-origin="schedule"') == 1
    assert "run now" in client_for("Viewer").get(f"/backups/{b.pk}/").content.decode()
