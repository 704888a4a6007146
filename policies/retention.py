"""Retention: which of a policy's backups to keep, which to delete. Pure functions.

The rules keep the union of what each rule keeps (as restic and borg do):

- keep last N: the N newest successful backups;
- daily D / weekly W / monthly M / yearly Y (grandfather-father-son): the newest
  successful backup in each of the D most recent days that have one (ISO weeks,
  calendar months, years likewise), counted in the policy's time zone. Periods without
  a backup are not counted, so an outage does not make old backups expire;
- max age: every successful backup younger than so many days.

The safety rules come first and cannot be overridden by any rule:

- only backups the policy itself made are candidates (origin "schedule", made by one
  of its runs); manual, safety and imported backups and backups marked "keep" are never
  touched;
- nothing is deleted when the new backup failed;
- nothing is deleted when storage could not be listed or the listing came back empty,
  or when the listing does not show the archive of a backup the rules keep (deleting
  old backups in favour of one that is not there is how data gets lost);
- the newest successful verified backup of the volume (whatever made it) is never
  deleted, and neither is the newest successful backup the policy made;
- active (queued, running) and failed backups are not retention's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

SUCCEEDED = "succeeded"
SCHEDULE = "schedule"


@dataclass(frozen=True)
class Record:
    """One backup, as retention sees it."""

    id: int
    at: datetime  # when it was taken (aware)
    status: str = SUCCEEDED
    origin: str = SCHEDULE
    keep: bool = False
    verified: bool = True
    owned: bool = True  # made by this policy's runs
    key: str = ""  # the archive's storage key (a restic backup: its snapshot id)
    repository: int | None = None  # which repository it is in (rules and safety apply per repository)

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def candidate(self) -> bool:
        """May the policy delete it at all?"""
        return self.owned and self.succeeded and self.origin == SCHEDULE and not self.keep


@dataclass(frozen=True)
class Rules:
    keep_last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    max_age_days: int = 0

    @property
    def keeps_something(self) -> bool:
        return any((self.keep_last, self.daily, self.weekly, self.monthly, self.yearly, self.max_age_days))

    def describe(self) -> str:
        parts = []
        if self.keep_last:
            parts.append(f"last {self.keep_last}")
        for count, word in ((self.daily, "daily"), (self.weekly, "weekly"), (self.monthly, "monthly"),
                            (self.yearly, "yearly")):
            if count:
                parts.append(f"{count} {word}")
        if self.max_age_days:
            parts.append(f"everything from the last {self.max_age_days} day{'s' if self.max_age_days != 1 else ''}")
        return "keep " + ", ".join(parts) if parts else "keep everything (no rule)"


@dataclass
class Plan:
    keep: dict[int, list[str]] = field(default_factory=dict)  # id -> why it is kept
    delete: list[Record] = field(default_factory=list)
    untouchable: list[Record] = field(default_factory=list)  # not the policy's to delete
    refused: str = ""  # why nothing is deleted at all (a safety rule)

    @property
    def delete_ids(self) -> list[int]:
        return [r.id for r in self.delete]


def _period(at: datetime, kind: str, tz: tzinfo) -> tuple:
    local = at.astimezone(tz)
    if kind == "daily":
        return (local.year, local.month, local.day)
    if kind == "weekly":
        iso = local.isocalendar()
        return (iso.year, iso.week)
    if kind == "monthly":
        return (local.year, local.month)
    return (local.year,)


def _newest_first(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.at, r.id), reverse=True)


def kept_by_rules(records: Iterable[Record], rules: Rules, *, now: datetime, tz: tzinfo) -> dict[int, list[str]]:
    """id -> reasons, for the successful records the rules keep (no safety rules here)."""
    ordered = [r for r in _newest_first(records) if r.succeeded]
    keep: dict[int, list[str]] = {}

    def mark(record: Record, reason: str) -> None:
        keep.setdefault(record.id, []).append(reason)

    for record in ordered[: rules.keep_last]:
        mark(record, "last")
    for kind, count in (("daily", rules.daily), ("weekly", rules.weekly), ("monthly", rules.monthly),
                        ("yearly", rules.yearly)):
        if not count:
            continue
        seen: set[tuple] = set()
        for record in ordered:  # newest first: the first one seen in a period is its newest
            period = _period(record.at, kind, tz)
            if period in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(period)
            mark(record, kind)
    if rules.max_age_days:
        cutoff = now - timedelta(days=rules.max_age_days)
        for record in ordered:
            if record.at >= cutoff:
                mark(record, f"younger than {rules.max_age_days} days")
    return keep


def plan(
    records: Iterable[Record],
    rules: Rules,
    *,
    now: datetime,
    tz: tzinfo,
    new_backup_succeeded: bool = True,
    storage_keys: set[str] | None = None,
) -> Plan:
    """What to keep and delete among one volume's backups.

    `records`: every backup of the volume (all origins: the newest verified one is
    protected whoever made it). `storage_keys`: the archive keys the storage listing
    returned for the volume, or None when the listing failed (only a preview passes
    None with `storage_keys` unknown: see `preview`).
    """
    records = list(records)
    result = Plan()
    candidates = [r for r in records if r.candidate]
    result.untouchable = [r for r in records if r.succeeded and not r.candidate]
    result.keep = kept_by_rules(candidates, rules, now=now, tz=tz)

    ordered = _newest_first(records)
    newest_verified = next((r for r in ordered if r.succeeded and r.verified), None)
    if newest_verified is not None:
        result.keep.setdefault(newest_verified.id, []).append("newest verified backup of the volume")
    newest_owned = next((r for r in ordered if r.candidate), None)
    if newest_owned is not None:
        result.keep.setdefault(newest_owned.id, []).append("newest backup of this policy")

    deletable = [r for r in candidates if r.id not in result.keep]
    if not deletable:
        return result
    if not rules.keeps_something:
        result.refused = "The policy has no retention rule: nothing is deleted."
    elif not new_backup_succeeded:
        result.refused = "The new backup failed: nothing is deleted until a backup succeeds."
    elif storage_keys is None:
        result.refused = "The backup storage could not be listed: nothing is deleted."
    elif not storage_keys:
        result.refused = "The backup storage listing came back empty: nothing is deleted."
    else:
        kept_here = [r for r in candidates if r.id in result.keep]
        missing = [r for r in kept_here if r.key and r.key not in storage_keys]
        if missing:
            result.refused = (
                f"The archive of backup #{missing[0].id}, which the rules keep, is not in the storage "
                f"listing: nothing is deleted."
            )
    if not result.refused:
        result.delete = _newest_first(deletable)
    return result


def preview(records: Iterable[Record], rules: Rules, *, now: datetime, tz: tzinfo) -> Plan:
    """What the rules would delete today, storage assumed healthy (for the policy page)."""
    records = list(records)
    keys = {r.key or f"#{r.id}" for r in records} or {"(none)"}
    records = [r if r.key else Record(**{**r.__dict__, "key": f"#{r.id}"}) for r in records]
    return plan(records, rules, now=now, tz=tz, storage_keys=keys)
