"""The usage sampler against the real engine."""

import pytest
from django.conf import settings

from insights.models import VolumeUsageSample
from insights.services import usage_sample
from tests import dockercli
from volumes import services

pytestmark = [pytest.mark.django_db]


def _sizes(name):
    return list(VolumeUsageSample.objects.filter(volume__name=name).order_by("at").values_list("size_bytes", flat=True))


@pytest.mark.engine
def test_sampler_records_the_measured_size_and_a_new_sample_after_growth():
    vol = dockercli.create_volume()
    dockercli.fill_volume(vol, "head -c 400000 /dev/zero > /data/blob")
    services.mirror_sync()

    first = usage_sample(max_age_seconds=0)  # the refresh is "stale": the sampler measures itself
    again = usage_sample(max_age_seconds=3600)  # fresh: reuses the measurement, which is sampled already
    dockercli.fill_volume(vol, "head -c 300000 /dev/zero > /data/more")
    usage_sample(max_age_seconds=0)

    assert first.measured and first.samples >= 1
    assert not again.measured and again.samples == 0
    sizes = _sizes(vol)
    assert len(sizes) == 2
    assert sizes[0] >= 400000
    assert sizes[1] >= sizes[0] + 300000


@pytest.mark.engine
def test_sampler_reuses_a_fresh_size_refresh_without_asking_the_engine(monkeypatch):
    vol = dockercli.create_volume()
    dockercli.fill_volume(vol, "head -c 100000 /dev/zero > /data/blob")
    services.mirror_sync()
    services.sizes_refresh()

    def refuse():
        raise AssertionError("the sampler measured again although the refresh was fresh")

    monkeypatch.setattr("insights.services.sizes_refresh", refuse)
    result = usage_sample(max_age_seconds=3600)

    assert not result.measured
    assert _sizes(vol)[0] >= 100000


def test_sampler_and_thinning_are_on_the_beat_schedule():
    from project.celery import app

    app.loader.import_default_modules()
    for entry in ("sample-usage", "thin-usage"):
        assert settings.CELERY_BEAT_SCHEDULE[entry]["task"] in app.tasks
    # Sampling measures sizes: it is sent to every host's worker (hosts.tasks.on_every_host).
    assert settings.CELERY_BEAT_SCHEDULE["sample-usage"]["args"][0] == "insights.tasks.sample_usage"
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"] == "hosts.tasks.on_every_host":
            assert entry["args"][0] in app.tasks, entry
    assert settings.CELERY_BEAT_SCHEDULE["sample-usage"]["schedule"].total_seconds() == settings.USAGE_SAMPLE_SECONDS


@pytest.mark.engine
def test_sampler_writes_nothing_when_the_engine_is_unreachable(settings):
    from volumes import engine
    from volumes.models import EngineStatus

    vol = dockercli.create_volume()
    services.mirror_sync()
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    engine.reset_client()
    try:
        with pytest.raises(engine.EngineUnavailable):
            usage_sample(max_age_seconds=0)
    finally:
        settings.DOCKER_HOST = ""
        engine.reset_client()

    assert _sizes(vol) == []
    assert EngineStatus.get().sizes_error
