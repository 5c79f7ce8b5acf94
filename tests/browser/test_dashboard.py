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
    """A month of calls by eight customers over three model tiers and of refusals of four codes, each
    with the month before (the 30 days' previous period), two customers awaiting approval and a
    low-balance threshold; the dashboard's clock at NOW."""
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
            rows.append(
                record(world.project.id, when, next(tier), tokens, tokens * 900, paying[(hour + call) % 8])
            )
    seed(rows)
    counts = [
        dict(
            customer_id=paying[h % 3].id,
            hour=NOW.replace(minute=0) - timedelta(hours=h),
            code=code,
            count=1 + h % 5,
        )
        for h in range(0, 60 * 24)
        for code in CODES[: 1 + h % 4]
    ]
    db.session.execute(RefusalCount.__table__.insert(), counts)
    db.session.commit()
    return world


def fits(page: Page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


HEADLINES = ("Calls", "Spend", "Active customers", "Refusals", "Awaiting approval", "Low balance")


def test_the_dashboard_reads_at_a_glance_on_a_wide_screen_and_a_phone(admin: Page, busy, tmp_path):
    for width, height, columns in ((1280, 1000, 3), (375, 800, 2)):
        admin.set_viewport_size({"width": width, "height": height})
        for span in ("24h", "7d", "30d"):
            admin.goto(f"/dashboard?range={span}")
            headlines = admin.get_by_role("region", name=re.compile("^Headline numbers"))
            cards = [headlines.get_by_role("link", name=re.compile(f"^{name}")) for name in HEADLINES]
            for card in cards:
                expect(card).to_be_visible()
            expect(cards[3]).to_contain_text("vs previous")  # refusals have their trend in every range
            # A grid of cards: three a row on a wide screen, two on a phone.
            tops = [card.bounding_box()["y"] for card in cards]
            assert tops[:columns] == [tops[0]] * columns and tops[columns] > tops[0], (width, tops)
            for chart in ("calls", "refusals", "tokens", "spend"):
                expect(admin.locator(f"#chart-{chart}")).to_be_visible()
                box = admin.locator(f"#chart-{chart}").bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (chart, box)  # scaled to fit
            scroll, inner = fits(admin)
            assert scroll <= inner, (width, span, scroll, inner)
            admin.screenshot(path=str(tmp_path / f"dashboard-{span}-{width}.png"), full_page=True)


def test_each_headline_leads_where_the_operator_goes_next(admin: Page, busy, live_url):
    admin.goto("/dashboard?range=24h")
    headlines = admin.get_by_role("region", name=re.compile("^Headline numbers"))
    for name, target in (
        ("Awaiting approval", "/customers?awaiting=1"),
        ("Low balance", "/customers?low=1"),
        ("Refusals", "/customers?refused=1"),
    ):
        headlines.get_by_role("link", name=re.compile(f"^{name}")).click()
        expect(admin).to_have_url(f"{live_url}{target}")
        admin.go_back()
    headlines.get_by_role("link", name=re.compile("^Spend")).click()
    expect(admin).to_have_url(f"{live_url}/dashboard?range=24h#usage-spend")
    expect(admin.locator("#chart-spend")).to_be_in_viewport()
