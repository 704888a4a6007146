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

The first request after a change would wait for the counting (0.3-0.6 s at 10,000 volumes);
`counted(stale_ok=True)` gives it the last figures instead, marked with their time, and the
overview asks for the recount itself at once (an htmx request that swaps the figures in).
That happens only where the last counting was slow (CARGOHOLD_FIGURES_SLOW_MS, 100 ms by
default): with a few hundred volumes every request counts, as before. Those last figures
are kept in the `figures` cache, a database table: every web process shows them, also after
a restart; only the very first view of a viewer counts in the request.
"""

from __future__ import annotations

import hashlib
import logging
import itertools
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from django.core.cache import cache, caches
from django.core.signals import request_started
from django.db import transaction
from django.db.models import Count, Max, Q, Sum
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 120
STALE_SECONDS = 3600  # figures older than this are counted again in the request, never shown stale
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


@dataclass(frozen=True)
class Counted:
    """Figures and when they were counted; `stale`: counted before the latest change (the
    page shows them with their time and asks for a recount at once)."""

    value: Any
    counted_at: datetime
    stale: bool = False


FORMAT = 2  # what a kept entry looks like: (FORMAT, state, Counted, cost_ms)


def counted(name: str, viewer: str, compute, *, stale_ok: bool = False) -> Counted:
    """`compute()` for `viewer` (who sees what: viewer_key, or "" for everything) and the
    current state, reused while the state is the same.

    `stale_ok`: after a change, when the last counting for this viewer took at least
    settings.FIGURES_SLOW_MS and is at most STALE_SECONDS old, its figures come
    back marked stale instead of being counted again in this request; the caller shows them
    as such and asks for a recount (the overview's `?recount=1`), which passes False.
    Small catalogues count in a few ms and are never stale. Kept figures of the current
    state (another process counted them) are fresh."""
    viewer = hashlib.sha1(viewer.encode()).hexdigest()[:16]  # keys safe for any cache backend
    state = state_version()
    key = f"cargohold:{name}:{viewer}:{state}"
    last_key = f"cargohold:{name}:{viewer}:last:{FORMAT}"
    hit = cache.get(key)
    if hit is not None:
        return hit
    if stale_ok:
        last = _kept(lambda: _entry(caches["figures"].get(last_key)))
        if last is not None:
            kept_state, kept, cost_ms = last
            if kept_state == state:
                cache.set(key, kept, TIMEOUT_SECONDS)
                return kept
            if cost_ms >= settings.FIGURES_SLOW_MS:
                return Counted(kept.value, kept.counted_at, stale=True)
    t = time.perf_counter()
    result = Counted(compute(), timezone.now())
    cost_ms = (time.perf_counter() - t) * 1000
    cache.set(key, result, TIMEOUT_SECONDS)
    _kept(lambda: caches["figures"].set(last_key, (FORMAT, state, result, cost_ms), STALE_SECONDS))
    return result


def _entry(value):
    """A kept entry as (state, Counted, cost_ms); anything else (another version's) None."""
    if (isinstance(value, tuple) and len(value) == 4 and value[0] == FORMAT and isinstance(value[2], Counted)
            and isinstance(value[3], (int, float))):
        return value[1], value[2], value[3]
    return None


def _kept(action):
    """`action` on the `figures` cache (a database table), or None when it fails: the last
    figures are a help, never a reason for the page to fail (a database not migrated yet, a
    value pickled by another version). In a savepoint: PostgreSQL's transaction survives."""
    try:
        with transaction.atomic():
            return action()
    except Exception:  # noqa: BLE001  (whatever the backend or the unpickling raises)
        logger.warning("the overview's last figures could not be read or kept", exc_info=True)
        return None


def viewer_key(who) -> str:
    """Who a request's figures are for: the user, what they may see (active, superuser,
    global roles, team roles, the teams' rules) and the team switcher's choice. A change of
    any of them is a new viewer: figures kept for the old scope are never shown."""
    if who is None:
        return ""
    from accounts import scoping
    from accounts.models import TeamMembership, TeamRule

    user = getattr(who, "user", who)
    session = getattr(who, "session", None)
    team = session.get(scoping.SESSION_KEY) if session is not None else None
    pk = getattr(user, "pk", None)
    if pk is None:
        return f":{team or ''}"
    access = (
        user.is_active, user.is_superuser, sorted(user.groups.values_list("pk", flat=True)),
        sorted(TeamMembership.objects.filter(user_id=pk).values_list("team_id", "role")),
        TeamRule.objects.aggregate(n=Count("id"), top=Max("id")),
    )
    return f"{pk}:{team or ''}:{hashlib.sha1(repr(access).encode()).hexdigest()[:16]}"
