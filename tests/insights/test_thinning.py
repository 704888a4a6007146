"""Thinning of usage samples: pure logic over generated samples, then the DB service."""

from datetime import datetime, timedelta, timezone

import pytest

from insights.services import samples_to_drop, thinning_bucket, usage_thin

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc)


def _every(minutes: int, days: float, volume_id: int = 1, start_id: int = 0):
    """(id, volume_id, at) every `minutes` over the last `days`, oldest first."""
    n = int(days * 24 * 60 / minutes)
    return [(start_id + i, volume_id, NOW - timedelta(minutes=minutes * (n - i))) for i in range(n)]


def _kept(samples):
    drop = set(samples_to_drop(samples, now=NOW))
    return [s for s in samples if s[0] not in drop]


def test_samples_younger_than_48_hours_are_all_kept():
    samples = _every(10, 2)

    assert samples_to_drop(samples, now=NOW) == []


def test_between_48_hours_and_a_week_one_sample_per_hour_is_kept():
    samples = [s for s in _every(10, 7) if NOW - s[2] > timedelta(hours=48, minutes=10)]

    kept = _kept(samples)

    hours = [s[2].replace(minute=0, second=0, microsecond=0) for s in kept]
    assert len(hours) == len(set(hours))
    assert len(kept) == pytest.approx(5 * 24, abs=2)


def test_older_than_a_week_one_sample_per_day_is_kept():
    samples = [s for s in _every(10, 30) if NOW - s[2] > timedelta(days=7, hours=1)]

    kept = _kept(samples)

    days = [s[2].date() for s in kept]
    assert len(days) == len(set(days)) == pytest.approx(23, abs=1)


def test_a_month_of_ten_minute_samples_shrinks_to_a_few_hundred():
    samples = _every(10, 30)

    kept = _kept(samples)

    assert len(samples) == 4320
    assert 288 + 5 * 24 <= len(kept) <= 288 + 5 * 24 + 25


def test_first_sample_of_each_bucket_survives_so_thinning_twice_changes_nothing():
    samples = _every(10, 30)
    once = _kept(samples)

    assert samples_to_drop(once, now=NOW) == []
    # ...and a day later, the hourly survivors that aged past a week thin to their day's first.
    later = NOW + timedelta(days=1)
    twice = [s for s in once if s[0] not in set(samples_to_drop(once, now=later))]
    assert samples_to_drop(twice, now=later) == []


def test_each_volume_is_thinned_on_its_own():
    samples = _every(30, 4, volume_id=1) + _every(30, 4, volume_id=2, start_id=10_000)

    kept = _kept(samples)

    per_volume = {v: sum(1 for s in kept if s[1] == v) for v in (1, 2)}
    assert per_volume[1] == per_volume[2] > 0


def test_bucket_boundaries():
    assert thinning_bucket(NOW - timedelta(hours=47), now=NOW) is None
    assert thinning_bucket(NOW - timedelta(hours=49, minutes=30), now=NOW) == ("hour", datetime(2026, 3, 29, 10, tzinfo=timezone.utc))
    assert thinning_bucket(NOW - timedelta(days=8), now=NOW) == ("day", datetime(2026, 3, 23).date())


@pytest.mark.django_db
def test_usage_thin_deletes_thinned_and_expired_samples(settings):
    from insights.models import VolumeUsageSample
    from volumes.models import Volume

    settings.USAGE_HISTORY_DAYS = 20
    volume = Volume.objects.create(name="thin-me")
    VolumeUsageSample.objects.bulk_create(
        VolumeUsageSample(volume=volume, at=at, size_bytes=i) for i, _, at in _every(10, 30)
    )

    deleted = usage_thin(now=NOW)

    left = list(VolumeUsageSample.objects.filter(volume=volume).values_list("at", flat=True))
    assert deleted == 4320 - len(left)
    assert min(left) >= NOW - timedelta(days=20)
    assert 288 + 120 <= len(left) <= 288 + 120 + 15
    assert usage_thin(now=NOW) == 0
