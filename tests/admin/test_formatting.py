"""Numbers for people: exact where people compare them, short where they are large."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.formatting import relative, tokens, usd


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (0, "0"),
        (9_966, "9,966"),
        (-5_000, "-5,000"),
        (99_999, "99,999"),
        (100_000, "100k"),
        (123_456, "123.5k"),
        (1_234_567, "1.2M"),
        (2 * 10**15, "2,000T"),
    ],
)
def test_tokens(value, shown):
    assert tokens(value) == shown


@pytest.mark.parametrize(
    ("nusd", "shown"),
    [
        (0, "$0.00"),
        (1, "<$0.0001"),
        (100_000, "$0.0001"),
        (4_310_000_000, "$4.31"),
        (10**18, "$1,000,000,000.00"),
    ],
)
def test_usd(nusd, shown):
    assert usd(nusd) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "just now"),
        (0, "just now"),
        (1, "in 1 second"),
        (35, "in 35 seconds"),
        (90, "in 1 minute"),
        (-7200, "2 hours ago"),
    ],
)
def test_relative_says_when_a_moment_in_seconds_is_still_to_come(seconds, shown):
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert relative(now + timedelta(seconds=seconds), now) == shown
