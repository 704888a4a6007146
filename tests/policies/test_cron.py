"""Cron expressions: what is accepted, how it reads, when it is due (pure logic)."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from policies import cron

UTC = timezone.utc


@pytest.mark.parametrize("text, expected", [
    ("0 2 * * *", "0 2 * * *"),
    ("  0   2 * *   * ", "0 2 * * *"),
    ("@daily", "0 0 * * *"),
    ("@HOURLY", "0 * * * *"),
    ("*/15 8-18 * * mon-fri", "*/15 8-18 * * mon-fri"),
    ("0 3 1,15 * *", "0 3 1,15 * *"),
])
def test_valid_expressions_are_normalised(text, expected):
    assert cron.parse(text).expression == expected


@pytest.mark.parametrize("text, says", [
    ("", "Enter a cron expression"),
    ("* * * *", "five fields"),
    ("* * * * * *", "five fields"),
    ("61 * * * *", "minute field"),
    ("0 24 * * *", "hour field"),
    ("0 0 0 * *", "day of month field"),
    ("0 0 * 13 *", "month field"),
    ("0 0 * * 7", "day of week field"),
    ("0 0 L * *", "day of month field"),
    ("0 0 * * 1#2", "day of week field"),
    ("0 2 1 * 1", "not both"),
    ("0 0 30 2 *", "never due"),
    ("@fortnightly", "Unknown shortcut"),
    ("rm -rf / * *", "minute field"),
])
def test_invalid_expressions_say_what_is_wrong(text, says):
    with pytest.raises(cron.CronError, match=says):
        cron.parse(text)


def test_description_is_readable():
    assert cron.describe("0 2 * * *") == "At 02:00"
    assert "Monday through Friday" in cron.describe("*/5 * * * 1-5")


def test_next_runs_are_in_the_policys_time_zone():
    after = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    runs = cron.next_runs("0 2 * * *", "Europe/Berlin", after=after, count=3)
    assert [r.isoformat() for r in runs] == [
        "2026-01-11T02:00:00+01:00", "2026-01-12T02:00:00+01:00", "2026-01-13T02:00:00+01:00",
    ]


def test_previous_run_counts_a_due_time_equal_to_now():
    at = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)
    assert cron.previous_run("0 2 * * *", "UTC", at=at) == at
    assert cron.previous_run("0 2 * * *", "UTC", at=at - timedelta(seconds=1)) == at - timedelta(days=1)


def test_due_between_is_half_open_and_limited():
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    dues = cron.due_between("0 * * * *", "UTC", start=start, end=start + timedelta(hours=3))
    assert dues == [start + timedelta(hours=h) for h in (1, 2, 3)]
    assert len(cron.due_between("* * * * *", "UTC", start=start, end=start + timedelta(days=1), limit=10)) == 10


def test_max_interval_covers_the_weekend_of_a_weekday_schedule():
    now = datetime(2026, 1, 7, tzinfo=UTC)
    assert cron.max_interval("0 2 * * 1-5", "UTC", now=now) == timedelta(days=3)
    assert cron.max_interval("*/10 * * * *", "UTC", now=now) == timedelta(minutes=10)
    assert cron.min_interval("0 2 * * 1-5", "UTC", now=now) == timedelta(days=1)


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/15 8-18 * * 1-5", "30 4 1,15 * *", "0 0 * * sun"])
def test_celery_and_croniter_agree_on_the_next_due_time(expression):
    """Beat schedules with Celery's crontab; the pages show croniter's times: same answer."""
    c = cron.parse(expression)
    base = datetime(2026, 3, 3, 10, 7, tzinfo=UTC)
    for _ in range(5):
        schedule = crontab(minute=c.minute, hour=c.hour, day_of_month=c.day_of_month,
                           month_of_year=c.month_of_year, day_of_week=c.day_of_week,
                           nowfun=lambda: base)
        ours = cron.next_runs(expression, "UTC", after=base, count=1)[0]
        remaining = schedule.remaining_estimate(base)
        celery_next = (base + remaining).replace(second=0, microsecond=0)
        assert celery_next == ours
        base = ours + timedelta(seconds=30)


def test_unknown_time_zone_is_refused():
    with pytest.raises(cron.CronError, match="time zone"):
        cron.zone("Mars/Olympus_Mons")
    assert cron.zone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
