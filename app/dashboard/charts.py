"""Stacked bar charts drawn on the server as SVG: no JavaScript, nothing fetched from elsewhere.

Values stay exact integers (tokens, calls, nano-USD) in `data-value` and in the tooltips; floats
appear only in pixel geometry. Every series is `<g class="series" data-model-tier="…">` and every
bar carries `data-bucket` and `data-value`, so a test (or a scraper) can read the figures back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 800, 240
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 32, 24  # room for the value labels, the last tick, the legend
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
GRID_STEPS = 4
MAX_TICKS = 6  # bucket labels under the axis; more would overlap
BAR_SHARE = 0.7  # of a bucket's width; the rest is the gap between bars

# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
COLOURS = {"standard": "#0072b2", "premium": "#e69f00", "super_premium": "#009e73", "reasoning": "#cc79a7"}
SPARE_COLOURS = ("#56b4e9", "#d55e00", "#f0e442", "#000000")


@dataclass(frozen=True)
class Series:
    model_tier: str
    values: Sequence[int]  # one per bucket


@dataclass(frozen=True)
class Chart:
    key: str  # the svg's id is chart-<key>
    title: str
    unit: str  # after a value in a tooltip ("calls"); empty when show() says it (money)
    show: Callable[[int], str]  # an integer as people read it: 1.2M, $4.31


def colour(model_tier: str, position: int) -> str:
    return COLOURS.get(model_tier) or SPARE_COLOURS[position % len(SPARE_COLOURS)]


def nice_step(peak: int) -> int:
    """The smallest 1, 2 or 5 times 10^k that fits `peak` in GRID_STEPS steps: round axis labels."""
    magnitude = 1
    while True:
        for multiple in (1, 2, 5):
            if multiple * magnitude * GRID_STEPS >= peak:
                return multiple * magnitude
        magnitude *= 10


def _y(value: int, top: int) -> float:
    return TOP + PLOT_H - PLOT_H * value / top


def _px(value: float) -> str:
    return f"{value:.1f}"


def _grid(step: int, show: Callable[[int], str]) -> list[str]:
    top = step * GRID_STEPS
    parts = ['<g class="grid">']
    for i in range(GRID_STEPS + 1):
        y = _px(_y(step * i, top))
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" />')
        parts.append(f'<text x="{LEFT - 6}" y="{y}" text-anchor="end" dy="4">{escape(show(step * i))}</text>')
    parts.append("</g>")
    return parts


def _ticks(labels: Sequence[str]) -> list[str]:
    slot = PLOT_W / len(labels)
    every = -(-len(labels) // MAX_TICKS)  # ceiling division
    parts = ['<g class="ticks">']
    for i, label in enumerate(labels):
        if (len(labels) - 1 - i) % every == 0:  # counted from the right: the current bucket is labelled
            x = _px(LEFT + slot * (i + 0.5))
            parts.append(f'<text x="{x}" y="{HEIGHT - 6}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</g>")
    return parts


def _legend(series: Sequence[Series]) -> list[str]:
    parts = ['<g class="legend">']
    for i, s in enumerate(series):
        x = LEFT + i * 130
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{colour(s.model_tier, i)}" />')
        parts.append(f'<text x="{x + 18}" y="18">{escape(s.model_tier.replace("_", " "))}</text>')
    parts.append("</g>")
    return parts


def _bars(chart: Chart, buckets: Sequence[str], series: Sequence[Series], top: int) -> list[str]:
    slot = PLOT_W / len(buckets)
    width = _px(slot * BAR_SHARE)
    stacked = [0] * len(buckets)  # exact integer heights so far; pixels are derived from them
    parts: list[str] = []
    for position, s in enumerate(series):
        tier = escape(s.model_tier)
        fill = colour(s.model_tier, position)
        parts.append(f'<g class="series" data-model-tier="{tier}" fill="{fill}">')
        for i, (bucket, value) in enumerate(zip(buckets, s.values, strict=True)):
            low, high = stacked[i], stacked[i] + value
            stacked[i] = high
            y, height = _y(high, top), _y(low, top) - _y(high, top)
            x = _px(LEFT + slot * i + slot * (1 - BAR_SHARE) / 2)
            shown = f"{chart.show(value)} {chart.unit}".strip()
            tip = escape(f"{s.model_tier.replace('_', ' ')} · {bucket}: {shown}")
            parts.append(
                f'<rect data-bucket="{escape(bucket)}" data-value="{value}" x="{x}" y="{_px(y)}" '
                f'width="{width}" height="{_px(height)}"><title>{tip}</title></rect>'
            )
        parts.append("</g>")
    return parts


def stacked_bars(
    chart: Chart, buckets: Sequence[str], ticks: Sequence[str], series: Sequence[Series]
) -> Markup:
    """One chart: a bar per bucket, stacked by model tier, with a value axis, bucket labels and a legend."""
    peak = max((sum(column) for column in zip(*(s.values for s in series), strict=True)), default=0)
    step = nice_step(peak)
    title_id = f"chart-{chart.key}-title"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-{chart.key}" class="chart" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{title_id}">',
        f'<title id="{title_id}">{escape(chart.title)}</title>',
        *_grid(step, chart.show),
        *_bars(chart, buckets, series, step * GRID_STEPS),
        *_ticks(ticks),
        *_legend(series),
        "</svg>",
    ]
    return Markup("\n".join(parts))
