"""Usage history writers: the sampler and the thinning. Worker-side only."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from insights.models import VolumeUsageSample
from hosts import refs
from volumes.models import EngineStatus, Volume
from volumes.services import sizes_refresh

logger = logging.getLogger(__name__)

# Thinning: every sample for two days, then one an hour for a week, then one a day.
KEEP_ALL = timedelta(hours=48)
KEEP_HOURLY = timedelta(days=7)


@dataclass
class SampleResult:
    measured: bool  # True when the sampler had to ask the engine itself
    samples: int
    duration_ms: int


def usage_sample(*, now: datetime | None = None, max_age_seconds: float | None = None) -> SampleResult:
    """Record each present volume's size, as measured by the latest size refresh.

    The engine's disk-usage walk is the expensive part and the mirror's size refresh
    already does it on its own schedule (SIZE_REFRESH_SECONDS), so the sampler reuses
    that measurement when it is fresher than half the sampling interval and measures
    only otherwise: one walk serves both. Each sample carries the time of the
    measurement, and a measurement is sampled once (newer than the newest sample), so
    running the sampler twice in a row adds nothing.
    """
    started = time.monotonic()
    now = now or timezone.now()
    if max_age_seconds is None:
        max_age_seconds = settings.USAGE_SAMPLE_SECONDS / 2
    measured_at = EngineStatus.get().sizes_measured_at
    measured = measured_at is None or (now - measured_at).total_seconds() > max_age_seconds
    if measured:
        sizes_refresh()  # raises EngineError when the engine is down: nothing new to sample
    here = refs.worker_host_name()  # each host's worker samples its own volumes
    newest = VolumeUsageSample.objects.filter(volume__host__name=here).aggregate(newest=Max("at"))["newest"]
    rows = Volume.objects.present().filter(host__name=here, size_bytes__isnull=False, size_measured_at__isnull=False)
    if newest is not None:
        rows = rows.filter(size_measured_at__gt=newest)
    samples = [
        VolumeUsageSample(volume_id=pk, at=at, size_bytes=size)
        for pk, at, size in rows.values_list("pk", "size_measured_at", "size_bytes")
    ]
    VolumeUsageSample.objects.bulk_create(samples, batch_size=500, ignore_conflicts=True)
    result = SampleResult(measured=measured, samples=len(samples), duration_ms=int((time.monotonic() - started) * 1000))
    logger.info("usage sample: %s volumes in %s ms (measured: %s)", result.samples, result.duration_ms, measured)
    return result


def thinning_bucket(at: datetime, *, now: datetime):
    """The bucket a sample competes in, or None while it is young enough to keep as is."""
    age = now - at
    if age <= KEEP_ALL:
        return None
    if age <= KEEP_HOURLY:
        return ("hour", at.replace(minute=0, second=0, microsecond=0))
    return ("day", at.date())


def samples_to_drop(samples: Iterable[tuple[int, int, datetime]], *, now: datetime) -> list[int]:
    """Ids to delete from (id, volume_id, at) rows sorted by volume, then time.

    The first sample of each bucket survives. Keeping the first (not the last) makes
    thinning stable: the survivor of an hour is still the first of its day when the
    hour ages into the daily zone, so running the thinning again changes nothing.
    """
    drop: list[int] = []
    current_volume = None
    seen: set = set()
    for sample_id, volume_id, at in samples:
        if volume_id != current_volume:
            current_volume, seen = volume_id, set()
        bucket = thinning_bucket(at, now=now)
        if bucket is None:
            continue
        if bucket in seen:
            drop.append(sample_id)
        else:
            seen.add(bucket)
    return drop


def usage_thin(*, now: datetime | None = None) -> int:
    """Thin old samples (see KEEP_ALL, KEEP_HOURLY) and drop those past USAGE_HISTORY_DAYS.

    Runs on its own schedule (hourly). Deletes in small batches, each its own
    transaction, so the web and the sampler are never kept waiting on SQLite's lock.
    Returns how many samples were deleted.
    """
    now = now or timezone.now()
    deleted, _ = VolumeUsageSample.objects.filter(at__lt=now - timedelta(days=settings.USAGE_HISTORY_DAYS)).delete()
    rows = (
        VolumeUsageSample.objects.filter(at__lt=now - KEEP_ALL)
        .order_by("volume_id", "at")
        .values_list("id", "volume_id", "at")
    )
    drop = samples_to_drop(rows.iterator(chunk_size=5000), now=now)
    for i in range(0, len(drop), 500):
        with transaction.atomic():
            VolumeUsageSample.objects.filter(pk__in=drop[i : i + 500]).delete()
    deleted += len(drop)
    if deleted:
        logger.info("usage thinning: %s samples deleted", deleted)
    return deleted
