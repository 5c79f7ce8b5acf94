"""Period boundaries and replenishment amounts (SPEC 4, 5.3).

A period is a grid of windows over time: either fixed-length steps (seconds to weeks, as a timedelta)
or month steps (months, years, n months). The grid's origin is the Unix epoch for calendar anchoring
and the customer's assignment time for assignment anchoring. All arithmetic is integer or timedelta,
so boundaries are exact; every datetime in and out is aware UTC.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CALENDAR = "calendar"
ASSIGNMENT = "assignment"
ANCHORS = (CALENDAR, ASSIGNMENT)

NONE = "none"
CALENDAR_UNITS = ("hour", "day", "week", "month", "year")
FIXED_UNITS = ("s", "m", "h", "d", "mo")
MAX_COUNT = 999_999

# Leading zeros and non-ASCII digits are refused so each period has exactly one spelling.
_FIXED = re.compile(r"([1-9][0-9]{0,5})(s|m|h|d|mo)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 1970-01-01 was a Thursday; ISO weeks start on Monday.
_FIRST_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)
_STEPS = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_MONTHS = {"month": 1, "year": 12, "mo": 1}


@dataclass(frozen=True)
class Period:
    """A tier's `period`, parsed: `unit` is `none`, a calendar unit or a fixed unit; `count` is n."""

    unit: str
    count: int = 1

    def __post_init__(self) -> None:
        if self.unit in FIXED_UNITS:
            if not 1 <= self.count <= MAX_COUNT:
                raise ValueError(f"a period length must be 1 to {MAX_COUNT}, not {self.count}")
        elif self.unit in (NONE, *CALENDAR_UNITS):
            if self.count != 1:
                raise ValueError(f"period {self.unit!r} takes no count")
        else:
            raise ValueError(f"unknown period unit {self.unit!r}")

    def __str__(self) -> str:
        return f"{self.count}{self.unit}" if self.unit in FIXED_UNITS else self.unit

    @property
    def is_fixed(self) -> bool:
        """True for `<n>s|m|h|d|mo` lengths, which SPEC 4 anchors at assignment by default."""
        return self.unit in FIXED_UNITS


def parse(text: str) -> Period:
    """The Period a tier's `period` string names; ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"a period must be a string, not {type(text).__name__}")
    if text == NONE or text in CALENDAR_UNITS:
        return Period(text)
    match = _FIXED.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid period {text!r}: use none, hour, day, week, month, year or <n>s|m|h|d|mo "
            f"with n from 1 to {MAX_COUNT}"
        )
    return Period(match.group(2), int(match.group(1)))


def duration(text: str | None) -> str | None:
    """An own budget's `budget_duration` (LiteLLM's `30s`…`1mo`, or any period) in its canonical
    spelling; None or `none`: it never resets. ValueError names what is wrong."""
    if text is None:
        return None
    period = str(parse(text))
    return None if period == NONE else period


def effective_anchor(period: Period, anchor: str | None) -> str:
    """The anchor a tier really runs on: `anchor` if given, else SPEC 4's default for the period.

    Calendar units default to calendar boundaries; fixed lengths (and `none`, whose single window
    starts at assignment anyway) default to the assignment time.
    """
    if anchor is None:
        return CALENDAR if period.unit in CALENDAR_UNITS else ASSIGNMENT
    return _checked_anchor(anchor)


def window(
    period: Period, anchor: str, assigned_at: datetime, now: datetime
) -> tuple[datetime, datetime | None]:
    """The [start, end) of the period containing `now`; end is None when the period never ends.

    With an assignment anchor the windows start at `assigned_at`; a `now` before it (clock skew)
    gets the first window. An end past the last representable datetime is also None.
    """
    _checked_anchor(anchor)
    assigned_at, now = _utc(assigned_at, "assigned_at"), _utc(now, "now")
    if period.unit == NONE:
        return assigned_at, None
    origin = assigned_at if anchor == ASSIGNMENT else _calendar_origin(period)
    if period.unit in _MONTHS:
        return _month_window(origin, _MONTHS[period.unit] * period.count, now, anchor == ASSIGNMENT)
    return _step_window(origin, _STEPS[period.unit] * period.count, now, anchor == ASSIGNMENT)


def replenishment(mode: str, tokens: int | None, max_balance: int | None, balance: int) -> int:
    """The ledger delta to apply at a period change (SPEC 4 `replenish_mode`).

    `reset` sets the balance to `tokens` (the delta is negative when the balance is above it);
    `add` adds `tokens` without taking the balance above `max_balance`, and never takes any away.
    No `tokens` (None or 0) means nothing is replenished.
    """
    if mode not in ("reset", "add"):
        raise ValueError(f"unknown replenish mode {mode!r}: use reset or add")
    _check_amount("tokens", tokens)
    _check_amount("max_balance", max_balance)
    _check_integer("balance", balance)
    if not tokens:
        return 0
    if mode == "reset":
        return tokens - balance
    if max_balance is None:
        return tokens
    return max(0, min(tokens, max_balance - balance))


def _checked_anchor(anchor: str) -> str:
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}: use calendar or assignment")
    return anchor


def _check_amount(name: str, value: int | None) -> None:
    if value is None:
        return
    _check_integer(name, value)
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {value}")


def _check_integer(name: str, value: int) -> None:
    # bool is an int subclass, and a float here would make the ledger inexact.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer number of tokens, not {value!r}")


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware UTC datetime, not {moment!r}")
    return moment.astimezone(UTC)


def _calendar_origin(period: Period) -> datetime:
    return _FIRST_MONDAY if period.unit == "week" else _EPOCH


def _step_window(
    origin: datetime, step: timedelta, now: datetime, from_origin: bool
) -> tuple[datetime, datetime | None]:
    index = (now - origin) // step
    if from_origin:
        index = max(index, 0)
    start = _shifted(origin, index * step)
    if start is None:
        raise _outside_range(now)
    return start, _shifted(start, step)


def _month_window(
    origin: datetime, months: int, now: datetime, from_origin: bool
) -> tuple[datetime, datetime | None]:
    # A first guess from whole months elapsed, then one correction: the boundary in now's own month
    # may still lie ahead of now (a later day or time of day).
    index = (_month_index(now) - _month_index(origin)) // months
    start = _add_months(origin, index * months)
    if start is not None and start > now:
        index -= 1
    if from_origin:
        index = max(index, 0)
    start = _add_months(origin, index * months)
    if start is None:
        raise _outside_range(now)
    return start, _add_months(origin, (index + 1) * months)


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _add_months(origin: datetime, months: int) -> datetime | None:
    """origin + months, the day clamped to the month's end (Jan 31 + 1 = Feb 28/29); None if out of range."""
    year, month0 = divmod(_month_index(origin) + months, 12)
    if not 1 <= year <= 9999:
        return None
    day = min(origin.day, calendar.monthrange(year, month0 + 1)[1])
    return origin.replace(year=year, month=month0 + 1, day=day)


def _outside_range(now: datetime) -> ValueError:
    # Only reachable for calendar-anchored lengths of centuries and a `now` long before 1970.
    return ValueError(f"the period containing {now.isoformat()} starts before year 1")


def _shifted(start: datetime, step: timedelta) -> datetime | None:
    try:
        return start + step
    except OverflowError:
        return None
