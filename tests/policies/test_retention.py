"""Retention rules as pure functions over generated backup histories (no database)."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st

from policies.retention import Record, Rules, kept_by_rules, plan, preview

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def daily(n: int, *, start: datetime = NOW, hour: int = 2, **kw) -> list[Record]:
    """n backups, one a day at `hour`, newest first, ids 1..n (1 = newest)."""
    base = start.replace(hour=hour, minute=0)
    return [Record(id=i + 1, at=base - timedelta(days=i), key=f"v/{i + 1}", **kw) for i in range(n)]


def keys(records) -> set[str]:
    return {r.key for r in records}


def deleted(records, rules, **kw) -> set[int]:
    kw.setdefault("storage_keys", keys(records))
    return set(plan(records, rules, now=NOW, tz=UTC, **kw).delete_ids)


# --- the rules ----------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_n():
    records = daily(10)
    assert deleted(records, Rules(keep_last=3)) == set(range(4, 11))


def test_keep_daily_keeps_the_newest_backup_of_each_day():
    # Two backups a day for 5 days: ids odd = 14:00 (newer), even = 02:00.
    records = []
    for day in range(5):
        d = NOW - timedelta(days=day)
        records.append(Record(id=2 * day + 1, at=d.replace(hour=14), key=f"v/{2 * day + 1}"))
        records.append(Record(id=2 * day + 2, at=d.replace(hour=2), key=f"v/{2 * day + 2}"))
    result = plan(records, Rules(daily=3), now=NOW, tz=UTC, storage_keys=keys(records))
    assert set(result.keep) == {1, 3, 5}
    assert set(result.delete_ids) == {2, 4, 6, 7, 8, 9, 10}


def test_daily_counts_days_that_have_a_backup_not_calendar_days():
    # An outage: backups 30, 31 and 32 days ago only. keep 2 daily keeps two of them.
    records = [Record(id=i, at=NOW - timedelta(days=29 + i), key=f"v/{i}") for i in (1, 2, 3)]
    assert deleted(records, Rules(daily=2)) == {3}


def test_weekly_monthly_yearly_keep_one_per_period():
    records = daily(400)  # a bit more than a year of dailies
    result = plan(records, Rules(weekly=4, monthly=3, yearly=2), now=NOW, tz=UTC, storage_keys=keys(records))
    by_reason: dict[str, list[int]] = {}
    for rid, reasons in result.keep.items():
        for reason in reasons:
            by_reason.setdefault(reason, []).append(rid)
    assert len(by_reason["weekly"]) == 4
    assert len(by_reason["monthly"]) == 3
    assert len(by_reason["yearly"]) == 2
    at = {r.id: r.at for r in records}
    weeks = {at[i].isocalendar()[:2] for i in by_reason["weekly"]}
    assert len(weeks) == 4  # one per ISO week
    # The monthly one of June is the newest of June (today's), of May its last day.
    assert sorted(at[i].date().isoformat() for i in by_reason["monthly"]) == ["2026-04-30", "2026-05-31", "2026-06-15"]
    assert sorted(at[i].year for i in by_reason["yearly"]) == [2025, 2026]
    assert len(result.delete) == 400 - len(result.keep)


def test_periods_follow_the_policys_time_zone():
    # 23:30 UTC on June 14 is already June 15 in Berlin: same local day as the 09:00 one.
    records = [
        Record(id=1, at=datetime(2026, 6, 15, 9, 0, tzinfo=UTC), key="v/1"),
        Record(id=2, at=datetime(2026, 6, 14, 23, 30, tzinfo=UTC), key="v/2"),
    ]
    in_utc = plan(records, Rules(daily=2), now=NOW, tz=UTC, storage_keys=keys(records))
    in_berlin = plan(records, Rules(daily=2), now=NOW, tz=ZoneInfo("Europe/Berlin"), storage_keys=keys(records))
    assert in_utc.delete_ids == []
    assert in_berlin.delete_ids == [2]


def test_max_age_keeps_everything_younger():
    records = daily(20)
    # 7 days: the ones taken within the last 7 days (ids 1..7 at 02:00 of the last 7 days).
    assert deleted(records, Rules(max_age_days=7)) == set(range(8, 21))


def test_rules_combine_as_a_union():
    records = daily(30)
    only_last = deleted(records, Rules(keep_last=2))
    both = deleted(records, Rules(keep_last=2, weekly=3))
    assert both < only_last


# --- the safety rules -------------------------------------------------------------------------


def test_nothing_is_deleted_when_the_new_backup_failed():
    records = daily(10)
    result = plan(records, Rules(keep_last=1), now=NOW, tz=UTC, storage_keys=keys(records),
                  new_backup_succeeded=False)
    assert result.delete == []
    assert "failed" in result.refused


def test_nothing_is_deleted_when_the_storage_listing_failed_or_is_empty():
    records = daily(10)
    failed = plan(records, Rules(keep_last=1), now=NOW, tz=UTC, storage_keys=None)
    empty = plan(records, Rules(keep_last=1), now=NOW, tz=UTC, storage_keys=set())
    assert failed.delete == [] and "could not be listed" in failed.refused
    assert empty.delete == [] and "empty" in empty.refused


def test_nothing_is_deleted_when_a_kept_archive_is_not_in_storage():
    records = daily(10)
    listing = keys(records) - {"v/1"}  # the newest, which the rule keeps, is not there
    result = plan(records, Rules(keep_last=2), now=NOW, tz=UTC, storage_keys=listing)
    assert result.delete == []
    assert "#1" in result.refused


def test_manual_safety_imported_and_keep_backups_are_never_touched():
    records = daily(12)
    records[5] = Record(id=6, at=records[5].at, origin="manual", key="v/6")
    records[6] = Record(id=7, at=records[6].at, origin="safety", key="v/7")
    records[7] = Record(id=8, at=records[7].at, origin="imported", key="v/8")
    records[8] = Record(id=9, at=records[8].at, keep=True, key="v/9")
    records[9] = Record(id=10, at=records[9].at, owned=False, key="v/10")  # another policy's
    gone = deleted(records, Rules(keep_last=1))
    assert gone == {2, 3, 4, 5, 11, 12}


def test_the_newest_verified_backup_of_the_volume_is_never_deleted():
    # The policy's newest backups are unverified; the newest verified one is old.
    records = [Record(id=i, at=NOW - timedelta(days=i), verified=i == 9, key=f"v/{i}") for i in range(1, 12)]
    assert 9 not in deleted(records, Rules(keep_last=2))


def test_the_policys_newest_backup_survives_a_max_age_that_would_delete_all():
    records = [Record(id=i, at=NOW - timedelta(days=30 + i), key=f"v/{i}") for i in range(1, 6)]
    assert deleted(records, Rules(max_age_days=7)) == {2, 3, 4, 5}


def test_failed_and_active_backups_are_not_retentions_business():
    records = daily(6)
    records[4] = Record(id=5, at=records[4].at, status="failed")
    records[5] = Record(id=6, at=records[5].at, status="running")
    assert deleted(records, Rules(keep_last=1)) == {2, 3, 4}


def test_no_rule_deletes_nothing():
    records = daily(5)
    result = plan(records, Rules(), now=NOW, tz=UTC, storage_keys=keys(records))
    assert result.delete == [] and result.refused


def test_preview_assumes_healthy_storage():
    records = daily(5)
    assert preview(records, Rules(keep_last=2), now=NOW, tz=UTC).delete_ids == [3, 4, 5]


# --- properties over generated histories ---------------------------------------------------------

ORIGINS = st.sampled_from(["schedule", "schedule", "schedule", "manual", "safety", "imported"])
STATUSES = st.sampled_from(["succeeded", "succeeded", "succeeded", "failed", "running"])


@st.composite
def histories(draw):
    n = draw(st.integers(min_value=0, max_value=60))
    offsets = draw(st.lists(st.integers(min_value=0, max_value=800 * 24), min_size=n, max_size=n))
    records = []
    for i, hours in enumerate(offsets, start=1):
        records.append(Record(
            id=i, at=NOW - timedelta(hours=hours), status=draw(STATUSES), origin=draw(ORIGINS),
            keep=draw(st.booleans()) and draw(st.booleans()), verified=draw(st.booleans()),
            owned=draw(st.booleans()) or draw(st.booleans()), key=f"v/{i}",
        ))
    return records


RULES = st.builds(
    Rules,
    keep_last=st.integers(0, 10), daily=st.integers(0, 10), weekly=st.integers(0, 6),
    monthly=st.integers(0, 13), yearly=st.integers(0, 3), max_age_days=st.integers(0, 60),
)


@settings(max_examples=150, deadline=None)
@given(histories(), RULES)
def test_property_only_the_policys_own_successful_unkept_backups_are_deleted(records, rules):
    result = plan(records, rules, now=NOW, tz=UTC, storage_keys=keys(records))
    for r in result.delete:
        assert r.owned and r.origin == "schedule" and not r.keep and r.status == "succeeded"
    assert not set(result.delete_ids) & set(result.keep)


@settings(max_examples=150, deadline=None)
@given(histories(), RULES)
def test_property_the_newest_verified_and_the_newest_owned_backup_survive(records, rules):
    result = plan(records, rules, now=NOW, tz=UTC, storage_keys=keys(records))
    gone = set(result.delete_ids)
    ordered = sorted(records, key=lambda r: (r.at, r.id), reverse=True)
    verified = [r for r in ordered if r.status == "succeeded" and r.verified]
    owned = [r for r in ordered if r.candidate]
    if verified:
        assert verified[0].id not in gone
    if owned:
        assert owned[0].id not in gone


@settings(max_examples=150, deadline=None)
@given(histories(), RULES)
def test_property_keep_last_n_keeps_the_n_newest_candidates(records, rules):
    result = plan(records, rules, now=NOW, tz=UTC, storage_keys=keys(records))
    candidates = sorted((r for r in records if r.candidate), key=lambda r: (r.at, r.id), reverse=True)
    assert not set(result.delete_ids) & {r.id for r in candidates[: rules.keep_last]}


@settings(max_examples=150, deadline=None)
@given(histories(), RULES)
def test_property_pruning_is_idempotent(records, rules):
    first = plan(records, rules, now=NOW, tz=UTC, storage_keys=keys(records))
    rest = [r for r in records if r.id not in set(first.delete_ids)]
    again = plan(rest, rules, now=NOW, tz=UTC, storage_keys=keys(rest))
    assert again.delete == []


@settings(max_examples=100, deadline=None)
@given(histories(), RULES, st.sampled_from(["keep_last", "daily", "weekly", "monthly", "yearly", "max_age_days"]))
def test_property_a_larger_count_never_deletes_more(records, rules, which):
    bigger = Rules(**{**rules.__dict__, which: getattr(rules, which) + 1})
    small = set(plan(records, rules, now=NOW, tz=UTC, storage_keys=keys(records)).delete_ids)
    large = set(plan(records, bigger, now=NOW, tz=UTC, storage_keys=keys(records)).delete_ids)
    if rules.keeps_something:
        assert large <= small


@settings(max_examples=100, deadline=None)
@given(histories(), RULES, st.one_of(st.none(), st.just(set())), st.booleans())
def test_property_unsafe_conditions_delete_nothing(records, rules, listing, new_ok):
    result = plan(records, rules, now=NOW, tz=UTC, storage_keys=listing, new_backup_succeeded=new_ok)
    assert result.delete == []
    result = plan(records, rules, now=NOW, tz=UTC, storage_keys=keys(records), new_backup_succeeded=False)
    assert result.delete == []


@settings(max_examples=100, deadline=None)
@given(histories(), RULES)
def test_property_the_rules_alone_keep_a_bounded_number(records, rules):
    kept = kept_by_rules([r for r in records if r.candidate], rules, now=NOW, tz=UTC)
    if not rules.max_age_days:
        assert len(kept) <= rules.keep_last + rules.daily + rules.weekly + rules.monthly + rules.yearly
