"""Period boundaries and replenishment: concrete examples, then properties over random periods and times."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.metering.periods import (
    ASSIGNMENT,
    CALENDAR,
    CALENDAR_UNITS,
    FIXED_UNITS,
    MAX_COUNT,
    Period,
    effective_anchor,
    parse,
    replenishment,
    window,
)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


ASSIGNED = at(2026, 1, 31, 10)


# --- parse ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", Period("none")),
        ("hour", Period("hour")),
        ("day", Period("day")),
        ("week", Period("week")),
        ("month", Period("month")),
        ("year", Period("year")),
        ("30s", Period("s", 30)),
        ("30m", Period("m", 30)),
        ("30h", Period("h", 30)),
        ("30d", Period("d", 30)),
        ("1mo", Period("mo", 1)),
        ("1s", Period("s", 1)),
        ("999999d", Period("d", MAX_COUNT)),
    ],
)
def test_valid_periods_parse(text: str, expected: Period):
    assert parse(text) == expected
    assert str(parse(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "0d",
        "-1h",
        "1w",
        "month2",
        "2month",
        "1000000d",
        "01d",
        "d",
        "mo",
        "1.5h",
        "30D",
        "Month",
        " day",
        "30d\n",
        "1y",
        "\uff13\uff10d",  # full-width "30d": int() would accept these digits
        None,
        30,
        True,
        b"30d",
    ],
)
def test_invalid_periods_are_refused(bad: object):
    with pytest.raises(ValueError):
        parse(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("unit", "count"), [("d", 0), ("mo", MAX_COUNT + 1), ("month", 2), ("w", 1)])
def test_period_refuses_impossible_values(unit: str, count: int):
    with pytest.raises(ValueError):
        Period(unit, count)


# --- anchors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "anchor", "expected"),
    [
        ("month", None, CALENDAR),
        ("hour", None, CALENDAR),
        ("month", ASSIGNMENT, ASSIGNMENT),
        ("30d", None, ASSIGNMENT),
        ("1mo", None, ASSIGNMENT),
        ("30d", CALENDAR, CALENDAR),
        ("none", None, ASSIGNMENT),
    ],
)
def test_effective_anchor_follows_spec_defaults(text: str, anchor: str | None, expected: str):
    assert effective_anchor(parse(text), anchor) == expected


def test_unknown_anchor_is_refused():
    with pytest.raises(ValueError):
        effective_anchor(parse("day"), "local")
    with pytest.raises(ValueError):
        window(parse("day"), "local", ASSIGNED, ASSIGNED)


# --- calendar anchoring --------------------------------------------------------------------------

LAST_SECOND_OF_NOVEMBER = at(2026, 11, 30, 23, 59, 59)


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("month", LAST_SECOND_OF_NOVEMBER, at(2026, 11, 1), at(2026, 12, 1)),
        ("month", at(2026, 12, 31, 12), at(2026, 12, 1), at(2027, 1, 1)),
        ("year", LAST_SECOND_OF_NOVEMBER, at(2026, 1, 1), at(2027, 1, 1)),
        ("day", LAST_SECOND_OF_NOVEMBER, at(2026, 11, 30), at(2026, 12, 1)),
        ("hour", LAST_SECOND_OF_NOVEMBER, at(2026, 11, 30, 23), at(2026, 12, 1)),
        ("hour", at(2026, 11, 30, 23), at(2026, 11, 30, 23), at(2026, 12, 1)),
        # 2026-11-29 is a Sunday: its ISO week began on Monday the 23rd.
        ("week", at(2026, 11, 29, 18), at(2026, 11, 23), at(2026, 11, 30)),
        ("week", at(2026, 11, 30), at(2026, 11, 30), at(2026, 12, 7)),
        # Whole days since the epoch have an even number of hours, so 2h blocks start at even hours.
        ("2h", LAST_SECOND_OF_NOVEMBER, at(2026, 11, 30, 22), at(2026, 12, 1)),
        ("2h", at(2026, 11, 30, 4, 30), at(2026, 11, 30, 4), at(2026, 11, 30, 6)),
        # November 2026 is month 682 since January 1970; 682 // 3 * 3 = 681, October 2026.
        ("3mo", at(2026, 11, 15), at(2026, 10, 1), at(2027, 1, 1)),
        ("12mo", at(2026, 11, 15), at(2026, 1, 1), at(2027, 1, 1)),
        ("30s", at(2026, 11, 15, 8, 0, 59), at(2026, 11, 15, 8, 0, 30), at(2026, 11, 15, 8, 1)),
        ("15m", at(2026, 11, 15, 8, 44), at(2026, 11, 15, 8, 30), at(2026, 11, 15, 8, 45)),
        # Fixed lengths count from the epoch, a Thursday: a calendar-anchored 7d is not an ISO week.
        ("7d", at(2026, 11, 29), at(2026, 11, 26), at(2026, 12, 3)),
        # Before the epoch the grid extends backwards (floor division, not truncation).
        ("day", at(1969, 12, 31, 23), at(1969, 12, 31), at(1970, 1, 1)),
        ("5h", at(1969, 12, 31, 23), at(1969, 12, 31, 19), at(1970, 1, 1)),
        ("5mo", at(1969, 12, 31, 23), at(1969, 8, 1), at(1970, 1, 1)),
    ],
)
def test_calendar_windows(text: str, now: datetime, start: datetime, end: datetime):
    assert window(parse(text), CALENDAR, ASSIGNED, now) == (start, end)


def test_calendar_windows_ignore_the_assignment_time():
    now = at(2026, 5, 17, 3)
    assert window(parse("month"), CALENDAR, at(2001, 1, 1), now) == window(parse("month"), CALENDAR, now, now)


def test_7d_calendar_starts_on_a_thursday():
    start, _ = window(parse("7d"), CALENDAR, ASSIGNED, at(2026, 11, 29))
    assert start.weekday() == 3


# --- assignment anchoring ------------------------------------------------------------------------


def test_month_after_january_31st_clamps_to_the_end_of_february_then_returns_to_the_31st():
    month = parse("month")
    first = window(month, ASSIGNMENT, ASSIGNED, at(2026, 2, 10))
    second = window(month, ASSIGNMENT, ASSIGNED, at(2026, 3, 1))
    third = window(month, ASSIGNMENT, ASSIGNED, at(2026, 4, 1))
    assert first == (ASSIGNED, at(2026, 2, 28, 10))
    assert second == (at(2026, 2, 28, 10), at(2026, 3, 31, 10))
    assert third == (at(2026, 3, 31, 10), at(2026, 4, 30, 10))


def test_month_in_a_leap_year_clamps_to_february_29th():
    assigned = at(2028, 1, 31, 10)
    assert window(parse("month"), ASSIGNMENT, assigned, at(2028, 2, 15)) == (assigned, at(2028, 2, 29, 10))
    assert window(parse("month"), ASSIGNMENT, assigned, at(2028, 3, 1)) == (
        at(2028, 2, 29, 10),
        at(2028, 3, 31, 10),
    )


def test_year_from_february_29th_comes_back_to_the_29th_in_the_next_leap_year():
    assigned = at(2028, 2, 29, 6)
    year = parse("year")
    assert window(year, ASSIGNMENT, assigned, at(2029, 1, 1)) == (assigned, at(2029, 2, 28, 6))
    assert window(year, ASSIGNMENT, assigned, at(2031, 12, 1)) == (at(2031, 2, 28, 6), at(2032, 2, 29, 6))


def test_30d_defaults_to_30_day_windows_from_assignment():
    period = parse("30d")
    anchor = effective_anchor(period, None)
    assert window(period, anchor, ASSIGNED, ASSIGNED) == (ASSIGNED, at(2026, 3, 2, 10))
    assert window(period, anchor, ASSIGNED, at(2026, 3, 15)) == (at(2026, 3, 2, 10), at(2026, 4, 1, 10))


def test_1mo_defaults_to_monthly_windows_from_assignment():
    period = parse("1mo")
    anchor = effective_anchor(period, None)
    # April's boundary (the 30th, 10:00) is still an hour ahead, so this is March's window.
    assert window(period, anchor, ASSIGNED, at(2026, 4, 30, 9)) == (at(2026, 3, 31, 10), at(2026, 4, 30, 10))
    assert window(period, anchor, ASSIGNED, at(2026, 4, 30, 10)) == (at(2026, 4, 30, 10), at(2026, 5, 31, 10))


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("day", at(2026, 2, 3, 9, 59), at(2026, 2, 2, 10), at(2026, 2, 3, 10)),
        ("hour", at(2026, 2, 3, 9, 59), at(2026, 2, 3, 9), at(2026, 2, 3, 10)),
        ("week", at(2026, 2, 7, 10), at(2026, 2, 7, 10), at(2026, 2, 14, 10)),
        ("90m", at(2026, 1, 31, 13, 5), at(2026, 1, 31, 13), at(2026, 1, 31, 14, 30)),
        ("2mo", at(2026, 4, 1), at(2026, 3, 31, 10), at(2026, 5, 31, 10)),
    ],
)
def test_assignment_windows(text: str, now: datetime, start: datetime, end: datetime):
    assert window(parse(text), ASSIGNMENT, ASSIGNED, now) == (start, end)


@pytest.mark.parametrize("text", ["day", "30d", "month", "3mo", "45s"])
def test_now_before_assignment_gets_the_first_window(text: str):
    period = parse(text)
    skewed = ASSIGNED - timedelta(seconds=3)
    assert window(period, ASSIGNMENT, ASSIGNED, skewed) == window(period, ASSIGNMENT, ASSIGNED, ASSIGNED)
    assert window(period, ASSIGNMENT, ASSIGNED, skewed)[0] == ASSIGNED


@pytest.mark.parametrize("anchor", [CALENDAR, ASSIGNMENT])
def test_none_is_one_window_from_assignment_that_never_ends(anchor: str):
    assert window(parse("none"), anchor, ASSIGNED, at(2090, 1, 1)) == (ASSIGNED, None)


def test_an_end_beyond_year_9999_is_open():
    assert window(parse("999999mo"), CALENDAR, ASSIGNED, ASSIGNED) == (at(1970, 1, 1), None)


# --- time zones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assigned_at", "now"),
    [
        (datetime(2026, 1, 31, 10), at(2026, 2, 1)),
        (ASSIGNED, datetime(2026, 2, 1)),
    ],
)
def test_naive_datetimes_are_refused(assigned_at: datetime, now: datetime):
    with pytest.raises(ValueError):
        window(parse("day"), CALENDAR, assigned_at, now)


def test_other_offsets_are_converted_to_utc():
    paris_midnight = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    start, end = window(parse("month"), CALENDAR, ASSIGNED, paris_midnight)
    assert (start, end) == (at(2026, 2, 1), at(2026, 3, 1))
    assert start.tzinfo is UTC


def test_assignment_months_are_counted_in_utc():
    # 22:00 on Feb 28th at UTC-5 is 03:00 on March 1st in UTC: the next boundary is April 1st, not March 28th.
    assigned = datetime(2026, 2, 28, 22, tzinfo=timezone(timedelta(hours=-5)))
    start, end = window(parse("month"), ASSIGNMENT, assigned, at(2026, 3, 20))
    assert (start, end) == (at(2026, 3, 1, 3), at(2026, 4, 1, 3))
    assert start.tzinfo is UTC


# --- properties ----------------------------------------------------------------------------------

counts = st.one_of(st.integers(1, 100), st.integers(1, MAX_COUNT))
periods = st.one_of(
    st.sampled_from(["none", *CALENDAR_UNITS]).map(parse),
    st.builds(Period, st.sampled_from(FIXED_UNITS), counts),
)
anchors = st.sampled_from([CALENDAR, ASSIGNMENT])
moments = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)
LAST_MONTH = 9999 * 12 + 11


def _ends_after_year_9999(period: Period, start: datetime) -> bool:
    months = {"month": 1, "year": 12, "mo": period.count}.get(period.unit)
    return months is not None and start.year * 12 + start.month - 1 + months > LAST_MONTH


@given(periods, anchors, moments, moments)
def test_the_window_contains_now(period: Period, anchor: str, assigned_at: datetime, now: datetime):
    start, end = window(period, anchor, assigned_at, now)
    assert start.tzinfo is UTC
    if end is None:
        assert period.unit == "none" or _ends_after_year_9999(period, start)
        return
    assert end.tzinfo is UTC
    if period.unit != "none" and (anchor == CALENDAR or now >= assigned_at):
        assert start <= now < end


@given(periods, anchors, moments, moments)
def test_windows_are_contiguous(period: Period, anchor: str, assigned_at: datetime, now: datetime):
    _, end = window(period, anchor, assigned_at, now)
    if end is not None:
        assert window(period, anchor, assigned_at, end)[0] == end
        assert window(period, anchor, assigned_at, end - timedelta(microseconds=1))[1] == end


@given(periods, anchors, moments, moments)
def test_window_is_idempotent(period: Period, anchor: str, assigned_at: datetime, now: datetime):
    start, end = window(period, anchor, assigned_at, now)
    assert window(period, anchor, assigned_at, start) == (start, end)


@given(periods, moments, moments)
def test_assignment_windows_never_start_before_assignment(
    period: Period, assigned_at: datetime, now: datetime
):
    start, _ = window(period, ASSIGNMENT, assigned_at, now)
    assert start >= assigned_at


@given(st.sampled_from(CALENDAR_UNITS).map(parse), moments, moments)
def test_calendar_units_start_on_utc_boundaries(period: Period, assigned_at: datetime, now: datetime):
    start, _ = window(period, CALENDAR, assigned_at, now)
    assert (start.minute, start.second, start.microsecond) == (0, 0, 0)
    if period.unit != "hour":
        assert start.hour == 0
    if period.unit == "week":
        assert start.weekday() == 0
    if period.unit in ("month", "year"):
        assert start.day == 1
    if period.unit == "year":
        assert start.month == 1


@given(st.sampled_from(["s", "m", "h", "d"]), counts, anchors, moments, moments)
def test_fixed_length_windows_are_whole_steps_from_their_origin(
    unit: str, count: int, anchor: str, assigned_at: datetime, now: datetime
):
    step = {
        "s": timedelta(seconds=1),
        "m": timedelta(minutes=1),
        "h": timedelta(hours=1),
        "d": timedelta(days=1),
    }
    length = step[unit] * count
    start, end = window(Period(unit, count), anchor, assigned_at, now)
    origin = assigned_at if anchor == ASSIGNMENT else at(1970, 1, 1)
    assert (start - origin) % length == timedelta(0)
    assert end == start + length


def _month_boundaries(anchor: datetime, months: int) -> Iterator[datetime]:
    """An independent oracle: walk first-of-month dates, clamping the anchor's day every `months` steps."""
    first = anchor.replace(day=1)
    for step in itertools.count():
        if step % months == 0:
            last_day = ((first + timedelta(days=32)).replace(day=1) - timedelta(days=1)).day
            yield first.replace(day=min(anchor.day, last_day))
        first = (first + timedelta(days=32)).replace(day=1)


@given(st.integers(1, 24), moments, moments)
def test_assignment_month_boundaries_are_measured_from_the_anchor(
    months: int, assigned_at: datetime, now: datetime
):
    boundaries = _month_boundaries(assigned_at, months)
    start, end = next(boundaries), next(boundaries)
    while end <= now:
        start, end = end, next(boundaries)
    assert window(Period("mo", months), ASSIGNMENT, assigned_at, now) == (start, end)


@given(periods)
def test_periods_round_trip_through_text(period: Period):
    assert parse(str(period)) == period


# --- replenishment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "tokens", "max_balance", "balance", "delta"),
    [
        ("reset", 1000, None, 300, 700),
        ("reset", 1000, None, 1000, 0),
        ("reset", 1000, None, 1500, -500),  # more left than the reset level: brought back down
        ("reset", 1000, None, -200, 1200),  # owed tokens are settled by the reset
        ("reset", 1000, 500, 300, 700),  # max_balance caps `add` only
        ("add", 1000, None, 300, 1000),
        ("add", 1000, None, -200, 1000),
        ("add", 1000, 2000, 300, 1000),
        ("add", 1000, 2000, 1500, 500),
        ("add", 1000, 2000, 2000, 0),
        ("add", 1000, 2000, 2500, 0),  # already above the cap: nothing added, nothing taken
        ("add", 1000, 0, -50, 50),
        ("reset", None, None, 300, 0),
        ("add", None, 2000, 300, 0),
        ("reset", 0, None, 300, 0),
        ("add", 0, None, 300, 0),
    ],
)
def test_replenishment_delta(
    mode: str, tokens: int | None, max_balance: int | None, balance: int, delta: int
):
    assert replenishment(mode, tokens, max_balance, balance) == delta


@pytest.mark.parametrize(
    ("mode", "tokens", "max_balance", "balance"),
    [
        ("topup", 1000, None, 0),
        ("", None, None, 0),
        ("reset", -1, None, 0),
        ("add", 1000, -1, 0),
        ("add", 1.5, None, 0),
        ("add", True, None, 0),
        ("reset", 1000, None, 0.5),
    ],
)
def test_bad_replenishment_input_is_refused(mode: str, tokens: object, max_balance: object, balance: object):
    with pytest.raises(ValueError):
        replenishment(mode, tokens, max_balance, balance)  # type: ignore[arg-type]


@given(st.integers(1, 10**12), st.one_of(st.none(), st.integers(0, 10**12)), st.integers(-(10**12), 10**12))
def test_add_never_passes_the_cap_and_never_takes_away(tokens: int, max_balance: int | None, balance: int):
    delta = replenishment("add", tokens, max_balance, balance)
    assert 0 <= delta <= tokens
    if max_balance is not None and delta > 0:
        assert balance + delta <= max_balance


@given(st.integers(1, 10**12), st.one_of(st.none(), st.integers(0, 10**12)), st.integers(-(10**12), 10**12))
def test_reset_lands_exactly_on_tokens(tokens: int, max_balance: int | None, balance: int):
    assert balance + replenishment("reset", tokens, max_balance, balance) == tokens
