"""Stacked bar charts drawn on the server as SVG: no JavaScript, nothing fetched from elsewhere.

Values stay exact integers (tokens, calls, nano-USD) in `data-value` and in the tooltips; floats
appear only in geometry. Every series is `<g class="series" data-<dimension>="…">` and every bar
carries `data-bucket` and `data-value`, so a test (or a scraper) can read the figures back.

The chart fills its column at any width without shrinking its text: the plot's horizontal geometry
is in percent of its width and its vertical geometry in pixels (a fixed height), with the value
axis's labels in a narrow SVG of their own beside it. A viewBox would scale the labels with the
chart, to 5 px on a phone or 20 px on a wide screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

from app.metering.pricing import to_usd

HEIGHT = 220
TOP, BOTTOM = 10, 26  # room for the top value label's upper half, and for the bucket labels
PLOT_H = HEIGHT - TOP - BOTTOM
MAX_STEPS = 5  # value axis intervals at most: room between the labels at this height
MAX_TICKS = 8  # bucket labels under the axis; on a phone every other one is hidden (class minor)
BAR_SHARE = 0.72  # of a bucket's width; the rest is the gap between bars
LABEL_PX = 7.2  # a character of the axis labels (12 px, tabular digits), to size their column

# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
COLOURS = {
    "standard": "#0072b2",
    "premium": "#e69f00",
    "super_premium": "#009e73",
    "reasoning": "#cc79a7",
    # Refusal codes: the balance and limit refusals warm, the others cool.
    "insufficient_tokens": "#d55e00",
    "usage_limit_reached": "#e69f00",
    "budget_exceeded": "#cc79a7",
    "rate_limit_exceeded": "#0072b2",
    "customer_blocked": "#3d3d3d",
    "load_shed": "#56b4e9",
    "region_not_allowed": "#009e73",
    "limits_unavailable": "#8c8c8c",
}
SPARE_COLOURS = ("#56b4e9", "#d55e00", "#f0e442", "#000000")


@dataclass(frozen=True)
class Series:
    key: str  # a model tier or a refusal code
    values: Sequence[int]  # one per bucket

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


def count_labels(values: Sequence[int], step: int) -> list[str]:
    """Calls or tokens: 1,000 and 2,500 on a small axis, 250k and 1.25M on a large one."""
    if values[-1] < 10_000:
        return [f"{v:,}" for v in values]
    return [_compact(Decimal(v)) for v in values]


def money_labels(values: Sequence[int], step: int) -> list[str]:
    """Nano-USD as dollars with as many decimals as the step needs (never fewer than cents once
    there are any), so that $0.00002 and $0.00004 are not both shown as $0.0000."""
    dollars = [to_usd(v) for v in values]
    if dollars[-1] >= 10_000:
        return [f"${_compact(d)}" if d else "$0" for d in dollars]
    exponent = to_usd(step).normalize().as_tuple().exponent
    places = max(0, -exponent) if isinstance(exponent, int) else 0
    places = 2 if 0 < places < 2 else places
    return [f"${d:,.{places}f}" if d else "$0" for d in dollars]


def _compact(value: Decimal) -> str:
    """Exact: 2500 is 2.5k, 1,250,000 is 1.25M (an axis's values are multiples of a round step)."""
    for size, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if value >= size:
            return f"{(value / size).normalize():f}{unit}"
    return f"{value.normalize():f}"


@dataclass(frozen=True)
class Chart:
    key: str  # the svg's id is chart-<key>
    title: str
    unit: str  # after a value in a tooltip ("calls"); empty when show() says it (money)
    show: Callable[[int], str]  # an integer as people read it: 1.2M, $4.31
    axis_labels: Callable[[Sequence[int], int], list[str]] = count_labels
    dimension: str = "model-tier"  # what the series are: data-<dimension> on each
    least: int = 1  # the axis's top when every value is 0 (money: a cent, not a nano-dollar)


@dataclass(frozen=True)
class Axis:
    step: int
    values: list[int]  # 0, step, 2 step … top
    labels: list[str]

    @property
    def top(self) -> int:
        return self.values[-1]


def nice_step(peak: int) -> int:
    """The smallest 1, 2, 2.5 or 5 times 10^k (an integer) that covers `peak` in MAX_STEPS steps."""
    magnitude = 1
    while True:
        for tenths in (10, 20, 25, 50):
            step, rest = divmod(tenths * magnitude, 10)  # 2.5 calls is no step
            if not rest and step * MAX_STEPS >= peak:
                return step
        magnitude *= 10


def axis(peak: int, labels: Callable[[Sequence[int], int], list[str]] = count_labels, least: int = 1) -> Axis:
    """Round values from 0 to the first multiple of the step at or over `peak` (at least one step)."""
    step = nice_step(peak) if peak else least
    steps = max(1, -(-peak // step))
    values = [step * i for i in range(steps + 1)]
    return Axis(step, values, labels(values, step))


def colour(key: str, position: int) -> str:
    return COLOURS.get(key) or SPARE_COLOURS[position % len(SPARE_COLOURS)]


def _y(value: int, top: int) -> float:
    return TOP + PLOT_H - PLOT_H * value / top


def _px(value: float) -> str:
    return f"{value:.1f}"


def _pc(value: float) -> str:
    return f"{value:.3f}%"


def _value_axis(scale: Axis) -> list[str]:
    width = 8 + round(LABEL_PX * max(len(label) for label in scale.labels))
    parts = [
        f'<svg class="chart-axis" width="{width}" height="{HEIGHT}" aria-hidden="true" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for value, label in zip(scale.values, scale.labels, strict=True):
        y = _px(_y(value, scale.top))
        parts.append(f'<text x="{width - 8}" y="{y}" dy="4" text-anchor="end">{escape(label)}</text>')
    parts.append("</svg>")
    return parts


def _grid(scale: Axis) -> list[str]:
    parts = ['<g class="grid">']
    for value in scale.values:
        y = _px(_y(value, scale.top))
        parts.append(
            f'<line class="{"base" if value == 0 else "rule"}" x1="0" x2="100%" y1="{y}" y2="{y}" />'
        )
    parts.append("</g>")
    return parts


def _ticks(labels: Sequence[str]) -> list[str]:
    """Bucket labels, thinned to MAX_TICKS, counted from the right: the current bucket is labelled."""
    slot = 100 / len(labels)
    every = -(-len(labels) // MAX_TICKS)  # ceiling division
    parts = ['<g class="ticks">']
    for i, label in enumerate(labels):
        shown, kept = divmod(len(labels) - 1 - i, every)
        if kept == 0:
            minor = ' class="minor"' if shown % 2 else ""
            x = _pc(slot * (i + 0.5))
            parts.append(f'<text{minor} x="{x}" y="{HEIGHT - 7}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</g>")
    return parts


def _bars(chart: Chart, buckets: Sequence[str], series: Sequence[Series], top: int) -> list[str]:
    slot = 100 / len(buckets)
    width = _pc(slot * BAR_SHARE)
    stacked = [0] * len(buckets)  # exact integer heights so far; pixels are derived from them
    parts: list[str] = []
    for position, s in enumerate(series):
        fill = colour(s.key, position)
        parts.append(f'<g class="series" data-{chart.dimension}="{escape(s.key)}" fill="{fill}">')
        for i, (bucket, value) in enumerate(zip(buckets, s.values, strict=True)):
            low, high = stacked[i], stacked[i] + value
            stacked[i] = high
            y, height = _y(high, top), _y(low, top) - _y(high, top)
            x = _pc(slot * i + slot * (1 - BAR_SHARE) / 2)
            shown = f"{chart.show(value)} {chart.unit}".strip()
            tip = escape(f"{s.label} · {bucket}: {shown}")
            parts.append(
                f'<rect data-bucket="{escape(bucket)}" data-value="{value}" x="{x}" y="{_px(y)}" '
                f'width="{width}" height="{_px(height)}"><title>{tip}</title></rect>'
            )
        parts.append("</g>")
    return parts


def legend(series: Sequence[Series]) -> Markup:
    """The series' colours as a list that wraps with the page, not in the chart's fixed geometry."""
    items = [
        Markup(
            '<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" rx="2" '
            'fill="{}" /></svg>{}</li>'
        ).format(colour(s.key, i), s.label)
        for i, s in enumerate(series)
    ]
    return Markup('<ul class="chart-legend">{}</ul>').format(Markup("").join(items))


def stacked_bars(
    chart: Chart,
    buckets: Sequence[str],
    ticks: Sequence[str],
    series: Sequence[Series],
) -> Markup:
    """One chart: a bar per bucket, stacked by series, with a value axis, bucket labels and a legend."""
    peak = max((sum(column) for column in zip(*(s.values for s in series), strict=True)), default=0)
    scale = axis(peak, chart.axis_labels, chart.least)
    title_id = f"chart-{chart.key}-title"
    parts = [
        '<div class="chart-plot">',
        *_value_axis(scale),
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-{chart.key}" class="chart" '
        f'width="100%" height="{HEIGHT}" role="img" aria-labelledby="{title_id}">',
        f'<title id="{title_id}">{escape(chart.title)}</title>',
        *_grid(scale),
        *_bars(chart, buckets, series, scale.top),
        *_ticks(ticks),
        "</svg>",
        "</div>",
        legend(series),
    ]
    return Markup("\n".join(parts))
