"""Cron expressions: validation, a readable description, due times in a time zone.

Two parsers must agree on every expression we accept: croniter (next run times on the
pages, missed-run detection) and Celery's crontab (what beat actually schedules). So we
accept only what both read the same way: five fields, numbers, ranges, steps, lists and
names, plus the @hourly/@daily/@weekly/@monthly/@yearly shortcuts. Restricting both the
day of the month and the day of the week is refused: cron ORs them, Celery ANDs them.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from celery.schedules import ParseException, crontab_parser
from croniter import croniter

from project.errors import CargoholdError

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# crontab_parser(max_, min_): the ranges Celery checks each field against.
_CELERY_RANGES = ((60, 0), (24, 0), (31, 1), (12, 1), (7, 0))
_FIELD_HELP = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-6 (0 is Sunday) or sun-sat")
_ALLOWED = set("0123456789*/,-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class CronError(CargoholdError):
    pass


@dataclass(frozen=True)
class Cron:
    expression: str  # the five fields, aliases expanded, single spaces
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str


def parse(text: str) -> Cron:
    """Validate a cron expression; raise CronError with a message a person can act on."""
    raw = " ".join((text or "").split())
    if not raw:
        raise CronError("Enter a cron expression, such as `0 2 * * *` (every day at 02:00).")
    expression = ALIASES.get(raw.lower(), raw)
    if expression.startswith("@"):
        raise CronError(f"Unknown shortcut {raw!r}: use one of {', '.join(sorted(ALIASES))}.")
    fields = expression.split(" ")
    if len(fields) != 5:
        raise CronError(
            f"A cron expression has five fields (minute hour day-of-month month day-of-week); "
            f"{raw!r} has {len(fields)}."
        )
    for name, value, (max_, min_), allowed in zip(FIELD_NAMES, fields, _CELERY_RANGES, _FIELD_HELP):
        if not set(value) <= _ALLOWED:
            raise CronError(f"The {name} field {value!r} has characters cron does not understand here.")
        try:
            parsed = crontab_parser(max_, min_).parse(value)
        except (ParseException, ValueError, KeyError, TypeError):
            raise CronError(
                f"The {name} field {value!r} is not valid: use {allowed}, *, ranges (1-5), steps (*/15) "
                f"or lists (1,15)."
            ) from None
        if not parsed:
            raise CronError(f"The {name} field {value!r} matches nothing.")
    if not croniter.is_valid(expression):
        raise CronError(f"{raw!r} is not a valid cron expression.")
    if fields[2] != "*" and fields[4] != "*":
        raise CronError(
            "Restrict either the day of the month or the day of the week, not both "
            "(cron and Celery disagree on what the combination means)."
        )
    try:
        next_runs(expression, "UTC", after=datetime(2000, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")), count=2)
    except Exception:
        raise CronError(f"{raw!r} is never due (no such date).") from None
    return Cron(expression, *fields)


def describe(expression: str) -> str:
    try:
        from cron_descriptor import Options, get_description

        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        return get_description(expression, options)
    except Exception:  # a description is a nicety; the expression itself is shown anyway
        return expression


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(f"Unknown time zone {name!r}.") from None


@lru_cache(maxsize=1)
def timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def next_runs(expression: str, tz_name: str, *, after: datetime, count: int = 5) -> list[datetime]:
    """The next `count` due times after `after`, as aware datetimes in the policy's zone."""
    it = croniter(expression, after.astimezone(zone(tz_name)))
    return [it.get_next(datetime) for _ in range(count)]


def previous_run(expression: str, tz_name: str, *, at: datetime) -> datetime:
    """The latest due time at or before `at` (aware, in the policy's zone)."""
    local = at.astimezone(zone(tz_name))
    # croniter's get_prev is strict: step a second past `at` so a due time equal to it counts.
    return croniter(expression, local + timedelta(seconds=1)).get_prev(datetime)


def due_between(expression: str, tz_name: str, *, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
    """Due times t with start < t <= end (at most `limit`, the earliest ones)."""
    if end <= start:
        return []
    it = croniter(expression, start.astimezone(zone(tz_name)))
    out = []
    while len(out) < limit:
        t = it.get_next(datetime)
        if t > end:
            break
        out.append(t)
    return out


@lru_cache(maxsize=512)
def _max_gap(expression: str, tz_name: str, day: str) -> int:
    start = datetime.fromisoformat(day).replace(tzinfo=zone(tz_name))
    times = next_runs(expression, tz_name, after=start, count=60)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    return int(max(gaps)) if gaps else 86400


def max_interval(expression: str, tz_name: str, *, now: datetime) -> timedelta:
    """The longest gap between consecutive due times (a weekday schedule: the weekend),
    so "overdue" never fires just because a gap is naturally long."""
    return timedelta(seconds=_max_gap(expression, tz_name, now.date().isoformat()))


def min_interval(expression: str, tz_name: str, *, now: datetime) -> timedelta:
    times = next_runs(expression, tz_name, after=now, count=30)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    return timedelta(seconds=min(gaps) if gaps else 86400)
