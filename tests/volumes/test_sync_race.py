"""Two mirror syncs overlap (the event watcher's and a job's): the one that listed the
engine earlier must not mark gone what the later one saw, whichever writes last."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hosts.models import default_host
from volumes.models import Volume
from volumes.services import SyncResult, _sync_volumes

pytestmark = pytest.mark.django_db


def test_an_older_listing_does_not_mark_gone_a_volume_a_newer_sync_saw():
    seen = timezone.now()
    Volume.objects.create(name="fresh", last_seen_at=seen)
    Volume.objects.create(name="old", last_seen_at=seen - timedelta(hours=1))

    # A sync that listed the engine a second before "fresh" was seen, writing now.
    _sync_volumes([], timezone.now(), SyncResult(), listed_at=seen - timedelta(seconds=1), host=default_host())

    assert Volume.objects.get(name="fresh").gone_since is None
    assert Volume.objects.get(name="old").gone_since is not None  # really not on the engine any more

    _sync_volumes([], timezone.now(), SyncResult(), listed_at=timezone.now(), host=default_host())  # a later listing without it
    assert Volume.objects.get(name="fresh").gone_since is not None
