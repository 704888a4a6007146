"""New volumes show their size within seconds: the watcher measures after the events that
change sizes, bounded (debounce, one at a time, a minimum interval); before the first
measurement a page says so."""

import pytest
from django.utils import timezone

from tests import dockercli
from tests.conftest import wait_for
from volumes.management.commands.watch_engine import SizeSchedule
from volumes.models import EngineStatus, Volume


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_burst_of_requests_is_one_measurement_after_the_debounce_window():
    clock = Clock()
    s = SizeSchedule(debounce=2, min_interval=15, clock=clock)
    assert s.wait_seconds() is None  # nothing asked
    s.request()
    clock.now += 1
    s.request()  # within the window: the same measurement
    assert s.wait_seconds() == 1
    clock.now += 1
    assert s.wait_seconds() == 0


def test_never_two_at_once_and_a_minimum_interval_between_starts():
    clock = Clock()
    s = SizeSchedule(debounce=2, min_interval=15, clock=clock)
    s.request()
    clock.now += 2
    s.start()
    s.request()  # an event while measuring
    clock.now += 5
    assert s.wait_seconds() is None  # one in flight
    s.finish()
    assert s.wait_seconds() == 10  # 15 s after the previous start
    clock.now += 10
    assert s.wait_seconds() == 0


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_volume_created_with_the_cli_shows_its_size_within_seconds(client_for, engine_watcher):
    viewer = client_for("Viewer")
    name = dockercli.create_volume()
    wait_for(lambda: Volume.objects.filter(name=name, size_bytes__isnull=False).exists(), timeout=60,
             message=f"a size for {name}")
    page = viewer.get(f"/volumes/{name}/").content.decode()
    assert "not measured" not in page
    assert "0 bytes" in page


@pytest.mark.django_db
def test_before_the_first_measurement_the_page_says_not_measured_yet(client_for):
    EngineStatus.objects.create(last_success_at=timezone.now(), sizes_measured_at=None)
    Volume.objects.create(name="fresh", search_text="fresh")
    page = client_for("Viewer").get("/volumes/fresh/").content.decode()
    assert "not measured yet" in page
    assert "driver" not in page.split("<dt>Size</dt>")[1].split("</dd>")[0]


@pytest.mark.django_db
def test_after_a_measurement_without_its_size_the_page_blames_the_driver(client_for):
    Volume.objects.create(name="nfs-share", driver="some-plugin", search_text="nfs-share")
    EngineStatus.objects.create(last_success_at=timezone.now(), sizes_measured_at=timezone.now())
    page = client_for("Viewer").get("/volumes/nfs-share/").content.decode()
    size = page.split("<dt>Size</dt>")[1].split("</dd>")[0]
    assert "not measured yet" not in size
    assert "does not report" in size
