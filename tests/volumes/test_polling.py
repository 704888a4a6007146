"""Lists under the polling convention (jobs/polling.py): fast while something on them is
active, every 15 s otherwise (never every few seconds forever)."""

import pytest

from jobs.models import Job
from volumes.models import Volume

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_volume_list_polls_slowly_when_nothing_on_it_is_active(client_for):
    Volume.objects.create(name="quiet")
    client = client_for("Viewer")

    for response in (client.get("/volumes/"), client.get("/volumes/", **HTMX)):
        body = response.content.decode()
        assert 'id="volume-table" data-poll-region="/volumes/" hx-get="/volumes/" hx-trigger="every 15s"' in body
        assert "every 3s" not in body and "every 2s" not in body


def test_the_volume_list_polls_fast_while_a_job_runs_on_a_listed_volume(client_for):
    Volume.objects.create(name="busy")
    Job.objects.create(kind="backup", target="busy", status=Job.Status.RUNNING)
    Job.objects.create(kind="backup", target="not-listed", status=Job.Status.RUNNING)
    client = client_for("Viewer")

    assert 'hx-trigger="every 2s"' in client.get("/volumes/", **HTMX).content.decode()
    # filtered to another volume, that job is not on the list any more
    Volume.objects.create(name="other")
    assert 'hx-trigger="every 15s"' in client.get("/volumes/?q=other", **HTMX).content.decode()


def test_the_container_list_polls_slowly(client_for):
    body = client_for("Viewer").get("/containers/").content.decode()
    assert 'id="container-table" data-poll-region="/containers/" hx-get="/containers/" hx-trigger="every 15s"' in body
    assert "every 5s" not in body
