"""Whole-catalogue figures (the overview, the protection summary) kept between requests
while nothing they read has changed.

They count every present volume, container, mount, backup and policy run: in SQL
aggregates since issue 16 (insights.selectors.overview, policies.selectors.health_figures),
still a few hundred ms with 10 hosts of 1,000 volumes (bench/many_hosts.py, "/ (cold)"), for
figures that change only when the mirror, a job, a run or a policy does. A request computes a cheap
fingerprint of those tables (a few aggregate queries, about 30 ms at that size) and
reuses the figures computed for the same fingerprint, by the same viewer, within the same
minute (what depends on the clock, "overdue" or "7 days ago", is at most a minute old).
Writes made in this process bump a generation too (signals), so a write that keeps the
aggregates equal is still seen at once. The cache is Django's (per process by default).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time

from django.core.cache import cache
from django.core.signals import request_started
from django.db.models import Count, Max, Q, Sum
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

TIMEOUT_SECONDS = 120
_generation = itertools.count()
_current = [next(_generation)]
_memo = threading.local()


def _bump(**kwargs) -> None:
    _current[0] = next(_generation)


def _forget(**kwargs) -> None:
    _memo.value = None


for _signal in (post_save, post_delete, m2m_changed):
    _signal.connect(_bump, dispatch_uid=f"cargohold-snapshot-{_signal}")
# Each request computes the fingerprint afresh (once, for the overview and its summary).
request_started.connect(_forget, dispatch_uid="cargohold-snapshot-request")


def state_version() -> str:
    """A fingerprint of what the figures read; memoised for the rest of the request (at
    most a second) in this thread: one request computes it once for the overview and its
    protection summary."""
    now = time.monotonic()
    memo = getattr(_memo, "value", None)
    if memo and memo[0] > now and memo[1] == _current[0]:
        return memo[2]
    from accounts.models import TeamMembership, TeamRule
    from backups.models import Backup
    from jobs.models import Job
    from policies.models import BackupPolicy, PolicyRun
    from volumes.models import Container, EngineStatus, Mount, Volume

    parts = (
        _current[0],
        Volume.objects.aggregate(n=Count("id"), top=Max("id"), seen=Max("last_seen_at"), gone=Count("gone_since"),
                                 size=Sum("size_bytes"), used=Count("id", filter=Q(container_count__gt=0))),
        Container.objects.aggregate(n=Count("id"), top=Max("id"), seen=Max("last_seen_at"), gone=Count("gone_since")),
        Mount.objects.aggregate(n=Count("id"), top=Max("id")),
        list(EngineStatus.objects.order_by("pk").values_list("sizes_measured_at", "docker_root_dir")),
        Job.objects.aggregate(n=Count("id"), top=Max("id"), ended=Max("finished_at"), started=Max("started_at"),
                              active=Count("id", filter=Q(status__in=Job.ACTIVE))),
        Backup.objects.aggregate(n=Count("id"), top=Max("id"), missing=Count("id", filter=Q(missing=True))),
        PolicyRun.objects.aggregate(n=Count("id"), top=Max("id"), at=Max("outcome_at")),
        BackupPolicy.objects.aggregate(n=Count("id"), at=Max("updated_at")),
        TeamRule.objects.aggregate(n=Count("id"), top=Max("id")),
        TeamMembership.objects.aggregate(n=Count("id"), top=Max("id")),
        timezone.now().replace(second=0, microsecond=0),
    )
    value = hashlib.sha1(repr(parts).encode()).hexdigest()[:20]
    _memo.value = (now + 1.0, _current[0], value)
    return value


def cached(name: str, viewer: str, compute):
    """`compute()`, or what it returned for the same `viewer` (who sees what: a user and
    team, or "" for everything) and the same state."""
    viewer = hashlib.sha1(viewer.encode()).hexdigest()[:16]  # keys safe for any cache backend
    key = f"cargohold:{name}:{viewer}:{state_version()}"
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, TIMEOUT_SECONDS)
    return value


def viewer_key(who) -> str:
    """Who a request's figures are for: the user and the team switcher's choice."""
    if who is None:
        return ""
    from accounts import scoping

    user = getattr(who, "user", who)
    session = getattr(who, "session", None)
    team = session.get(scoping.SESSION_KEY) if session is not None else None
    return f"{getattr(user, 'pk', '')}:{team or ''}"
