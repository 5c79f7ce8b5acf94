"""Clean chart axes (issue 16, build 4): round value ticks whose labels are all different, and bucket
labels thinned so that they never run into each other."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dashboard import charts

peaks = st.one_of(st.integers(0, 1_000), st.integers(0, 10**15))
labellers = st.sampled_from([charts.count_labels, charts.money_labels])


def round_number(step: int) -> bool:
    digits = str(step).rstrip("0")
    return digits in {"1", "2", "25", "5"}


@given(peaks, labellers)
def test_ticks_are_round_increasing_distinct_and_cover_the_peak(peak, labels):
    axis = charts.axis(peak, labels)
    assert axis.values[0] == 0 and axis.top >= peak
    assert all(b - a == axis.step for a, b in pairwise(axis.values))  # increasing
    assert round_number(axis.step), axis.step
    assert 2 <= len(axis.values) <= charts.MAX_STEPS + 1
    assert axis.top - axis.step < max(peak, 1)  # no empty step above the peak
    assert len(set(axis.labels)) == len(axis.labels), axis.labels


# 1, 2, 2.5 and 5 times a power of ten, in whole units (no 2.5 calls, no 2.5 nano-dollars).
ROUND = sorted({t * 10**k // 10 for k in range(18) for t in (10, 20, 25, 50) if t * 10**k % 10 == 0})


@given(st.integers(1, 10**15))
def test_the_step_is_the_smallest_round_one_that_fits(peak):
    assert charts.nice_step(peak) == min(s for s in ROUND if s * charts.MAX_STEPS >= peak)


@pytest.mark.parametrize(
    ("peak", "values"),
    [
        (0, [0, 1]),
        (4, [0, 1, 2, 3, 4]),
        (9, [0, 2, 4, 6, 8, 10]),
        (11, [0, 5, 10, 15]),
        (120, [0, 25, 50, 75, 100, 125]),
        (3_000_000_007, [0, 10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9]),
    ],
)
def test_value_ticks_are_round(peak, values):
    assert charts.axis(peak).values == values


@pytest.mark.parametrize(
    ("peak", "labels"),
    [
        # What the spend chart used to repeat as $0.0000, $0.0000, $0.0000, $0.0001 …
        (20_000, ["$0", "$0.000005", "$0.000010", "$0.000015", "$0.000020"]),
        (230_000, ["$0", "$0.00005", "$0.00010", "$0.00015", "$0.00020", "$0.00025"]),
        (2_600_000_000, ["$0", "$1", "$2", "$3"]),
        (1_200_000_000, ["$0", "$0.25", "$0.50", "$0.75", "$1.00", "$1.25"]),
        (15_000 * 10**9, ["$0", "$5k", "$10k", "$15k"]),
    ],
)
def test_money_labels_carry_the_decimals_the_step_needs(peak, labels):
    assert charts.axis(peak, charts.money_labels).labels == labels


def test_an_axis_of_no_money_reaches_a_cent():
    assert charts.axis(0, charts.money_labels, least=10_000_000).labels == ["$0", "$0.01"]


@pytest.mark.parametrize(
    ("peak", "labels"),
    [
        (7_000, ["0", "2,000", "4,000", "6,000", "8,000"]),
        (9_000, ["0", "2k", "4k", "6k", "8k", "10k"]),  # a 10,000 on the axis: all compact
        (12_345, ["0", "2.5k", "5k", "7.5k", "10k", "12.5k"]),
        (1_100_000, ["0", "250k", "500k", "750k", "1M", "1.25M"]),
    ],
)
def test_counts_are_exact_small_and_compact_large(peak, labels):
    assert charts.axis(peak).labels == labels


def bucket_labels(count: int) -> list[tuple[int, bool]]:
    """(bucket index, hidden on a phone) of each label under the axis."""
    markup = "\n".join(charts._ticks([f"b{i}" for i in range(count)]))
    return [
        (int(i), minor == ' class="minor"')
        for minor, i in re.findall(r"<text( class=\"minor\")? [^>]*>b(\d+)<", markup)
    ]


@given(st.integers(1, 400))
def test_bucket_labels_are_thinned_evenly_and_the_latest_is_labelled(count):
    labelled = bucket_labels(count)
    indexes = [i for i, _ in labelled]
    assert indexes[-1] == count - 1  # the current hour or day
    assert len(indexes) <= charts.MAX_TICKS
    gaps = {b - a for a, b in pairwise(indexes)}
    assert len(gaps) <= 1  # evenly spaced
    phone = [i for i, minor in labelled if not minor]
    assert phone[-1] == count - 1 and len(phone) <= charts.MAX_TICKS // 2


def test_thirty_days_are_labelled_every_fourth_day():
    assert [i for i, _ in bucket_labels(30)] == [1, 5, 9, 13, 17, 21, 25, 29]
    assert [i for i, minor in bucket_labels(30) if not minor] == [5, 13, 21, 29]
