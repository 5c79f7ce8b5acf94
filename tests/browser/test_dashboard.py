"""The dashboard in headless Chromium (issue 16, build 4): headline numbers with their trends, calls
beside refusals by code, clean axes, and no sideways scroll at 375 px, with data in every chart.

Screenshots at 1280 and 375 px wide are written to the test's tmp_path (kept by pytest under its
basetemp, e.g. `pytest --basetemp=/tmp/shots tests/browser/test_dashboard.py`)."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import RefusalCount
from tests.admin.test_dashboard import NOW, record, seed
from tests.factories import World

try:
    from playwright.sync_api import Page, expect
except ImportError as missing:  # fail loudly: the browser tests never skip
    raise ImportError(
        "Playwright for Python is not installed: run `.venv/bin/pip install -e '.[dev]'`"
    ) from missing

TIERS = ("standard", "premium", "reasoning")
CODES = ("insufficient_tokens", "usage_limit_reached", "rate_limit_exceeded", "customer_blocked")


@pytest.fixture
def busy(world: World, monkeypatch):
    """A month of calls by eight customers over three model tiers, refusals of four codes over the
    last week, two customers awaiting approval and a low-balance threshold; the dashboard's clock at NOW."""
    monkeypatch.setattr("app.dashboard.views.now_utc", lambda: NOW)
    world.set(low_balance_tokens=5_000)
    paying = [world.give_customer(f"customer-{i}", 500 + 2_000 * i) for i in range(8)]  # 3 under 5,000
    world.give_customer("waiting-1", 0)
    world.give_customer("waiting-2", 0)
    rows, tier = [], itertools.cycle(TIERS)
    for hour in range(60 * 24):  # the last 30 days and the 30 before, busier in the afternoon (UTC)
        for call in range(1 + (hour * 7) % 3 + (2 if 12 <= (NOW - timedelta(hours=hour)).hour < 20 else 0)):
            tokens = 300 + (hour * 37 + call * 101) % 1_700
            when = NOW - timedelta(hours=hour, minutes=call * 7)
            rows.append(record(world.project.id, when, next(tier), tokens, tokens * 900, paying[(hour + call) % 8]))
    seed(rows)
    counts = [
        dict(customer_id=paying[h % 3].id, hour=NOW.replace(minute=0) - timedelta(hours=h), code=code, count=1 + h % 5)
        for h in range(0, 6 * 24)
        for code in CODES[: 1 + h % 4]
    ]
    db.session.execute(RefusalCount.__table__.insert(), counts)
    db.session.commit()
    return world


def fits(page: Page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def test_the_dashboard_reads_at_a_glance_on_a_wide_screen_and_a_phone(admin: Page, busy, tmp_path):
    for width, height in ((1280, 1000), (375, 800)):
        admin.set_viewport_size({"width": width, "height": height})
        for span in ("24h", "30d"):
            admin.goto(f"/dashboard?range={span}")
            headlines = admin.get_by_role("region", name=re.compile("^Headline numbers"))
            for name in ("Calls", "Spend", "Active customers", "Refusals", "Awaiting approval", "Low balance"):
                expect(headlines.get_by_role("link", name=re.compile(f"^{name}"))).to_be_visible()
            for chart in ("calls", "refusals", "tokens", "spend"):
                expect(admin.locator(f"#chart-{chart}")).to_be_visible()
            scroll, inner = fits(admin)
            assert scroll <= inner, (width, span, scroll, inner)
            admin.screenshot(path=str(tmp_path / f"dashboard-{span}-{width}.png"), full_page=True)
