"""Numbers, money and times for people (template filters): 1.2M tokens, $4.31, "in 3 days"."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from flask import Flask
from markupsafe import Markup

from app.db import now_utc
from app.metering.pricing import to_usd

EXACT_BELOW = 100_000  # a balance people compare to the token, e.g. 9,966 (not "10k")


def tokens(value: int | None) -> str:
    """Exact below 100,000 (9,966); above, short (123.5k, 1.2M, 2,000T)."""
    if value is None:
        return "—"
    sign, n = ("-" if value < 0 else ""), abs(value)
    if n < EXACT_BELOW:
        return f"{sign}{n:,}"
    for size, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            shown = (Decimal(n) / size).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            return f"{sign}{shown.normalize():,f}{unit}"
    return f"{sign}{n}"


def usd(nusd: int | None) -> str:
    if nusd is None:
        return "—"
    value = to_usd(nusd)
    if 0 < abs(value) < Decimal("0.0001"):
        return f"{'-' if value < 0 else ''}<$0.0001"  # spent, but less than shown places
    places = Decimal("0.01") if abs(value) >= 1 or value == 0 else Decimal("0.0001")
    return f"${value.quantize(places, rounding=ROUND_HALF_UP):,f}"


def limit(value: int | None) -> str:
    """A tier limit as SPEC 10 words it: 0 is "none allowed" (every call is refused), null "no limit"."""
    if value is None:
        return "no limit"
    return "none allowed" if value == 0 else tokens(value)


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = int((moment - (now or now_utc())).total_seconds())
    future, seconds = seconds > 0, abs(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    if future and seconds > 0:  # a retry due in seconds: when, not "just now"
        return f"in {seconds} second{'' if seconds == 1 else 's'}"
    return "just now"


def moment(value: datetime | None) -> Markup:
    """A time as people scan it ("3 minutes ago"), with the exact UTC time on hover and for machines."""
    if value is None:
        return Markup("never")
    exact = value.astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        exact.isoformat().replace("+00:00", "Z"), exact.strftime("%Y-%m-%d %H:%M:%S UTC"), relative(exact)
    )


def register(app: Flask) -> None:
    app.add_template_filter(tokens, "tokens")
    app.add_template_filter(usd, "usd")
    app.add_template_filter(limit, "limit")
    app.add_template_filter(relative, "relative")
    app.add_template_filter(moment, "moment")
