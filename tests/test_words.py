"""Words that mean one thing (issue 14, item 8): "protected" is the never-delete label and
coverage has its own states; the ratio says what it divides; a failed login is listed with
the name tried; audit parameters expand; 403 and 404 are dashboard pages; a favicon."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import audit_record
from backups.models import Backup
from jobs.models import Job
from policies.models import BackupPolicy
from policies.selectors import Protection
from volumes.models import EngineStatus, Volume

pytestmark = pytest.mark.django_db


def _protection(**kw):
    return Protection(volume="v", in_use=True, **kw)


def test_coverage_states_have_distinct_names_and_none_of_them_is_protected():
    now = timezone.now()
    labels = {
        _protection(policy_names=["p"], last_success_at=now).label,
        _protection(policy_names=["p"]).label,
        _protection(policy_names=["p"], last_success_at=now, overdue=True).label,
        _protection().label,
    }
    assert labels == {"covered", "never backed up", "overdue", "in use, no policy"}
    assert "protected" not in " ".join(labels)


def test_the_volume_list_says_coverage_and_keeps_protected_for_the_label(client_for, make_policy_row):
    Volume.objects.create(name="kept", labels={"cargohold.protect": "true"}, search_text="kept")
    make_policy_row()
    EngineStatus.objects.create(last_success_at=timezone.now())
    page = client_for("Viewer").get("/volumes/").content.decode()
    row = page[page.index('data-volume="kept"'):]
    row = row[:row.index("</tr>")]
    assert ">never backed up<" in row and ">protected<" not in row
    detail = client_for("Admin").get("/volumes/kept/").content.decode()
    assert "cargohold.protect=true" in detail


@pytest.fixture
def make_policy_row():
    def make():
        from policies import services

        return services.policy_save(policy=BackupPolicy(name="all kept", selector_kind="names", selector_value="kept",
                                                        cron="0 2 * * *", keep_last=3))
    return make


def test_the_backups_ratio_says_what_it_divides(client_for):
    job = Job.objects.create(kind="backup", target="v", status=Job.Status.SUCCEEDED, finished_at=timezone.now())
    Backup.objects.create(job=job, volume_name="v", key="k", size_bytes=400, bytes_read=1000)
    page = client_for("Viewer").get("/backups/").content.decode()
    assert "Stored / data" in page and "divided by" in page and "40 %" in page


def test_a_failed_login_is_listed_with_the_name_tried(client, client_for):
    client.post("/accounts/login/", {"username": "mallory", "password": "nope"})
    admin = client_for("Admin")
    page = admin.get("/audit/", {"result": "error"}).content.decode()
    row = page[page.index('data-action="login"'):]
    row = row[:row.index("</tr>")]
    assert "not signed in" in row and "tried" in row and "mallory" in row and ">system<" not in row
    assert "mallory" in admin.get("/audit/", {"user": "mallory"}).content.decode()


def test_audit_parameters_expand_to_their_whole_values(client_for):
    long = "x" * 300
    audit_record(action="backup_start", object_type="volume", object_name="v",
                 params={"a": 1, "b": 2, "c": 3, "d": long})
    page = client_for("Admin").get("/audit/").content.decode()
    row = page[page.index('data-action="backup_start"'):]
    row = row[:row.index("</details>")]
    assert "<details" in row and "<summary" in row and "+1 more" in row and long in row


def test_403_is_a_dashboard_page_with_the_reason(client_for):
    response = client_for("Viewer").get("/policies/new/")
    body = response.content.decode()
    assert response.status_code == 403
    assert 'id="main-nav"' in body and "Your role does not allow this (manage policies)" in body


def test_404_is_a_dashboard_page_with_the_reason(client_for):
    viewer = client_for("Viewer")
    response = viewer.get("/volumes/no-such-volume/")
    body = response.content.decode()
    assert response.status_code == 404
    assert 'id="main-nav"' in body and "No volume named &#x27;no-such-volume&#x27; is known." in body
    nowhere = viewer.get("/no/such/page/")
    assert nowhere.status_code == 404 and "There is no page at this address." in nowhere.content.decode()
    assert "Resolver404" not in nowhere.content.decode()


def test_every_page_links_a_small_favicon(client_for):
    from django.contrib.staticfiles import finders

    assert 'rel="icon" href="/static/favicon.svg"' in client_for("Viewer").get("/volumes/").content.decode()
    path = finders.find("favicon.svg")
    assert path and open(path).read().startswith("<svg") and len(open(path).read()) < 2000
