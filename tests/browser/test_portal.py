"""The customer usage page in headless Chromium (issue 16, acceptance 3): read on a phone without
sideways scroll and with no way into the admin, made from the admin's "Copy usage link", framed
only by the origins the project lists."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from app.db import now_utc
from app.extensions import db
from app.portal import links
from tests.factories import World, assign, chat

try:
    from playwright.sync_api import Page, expect
except ImportError as missing:  # fail loudly: the browser tests never skip
    raise ImportError(
        "Playwright for Python is not installed: run `.venv/bin/pip install -e '.[dev]'`"
    ) from missing

TIER = {
    "key": "growth",
    "name": "Growth",
    "period": "month",
    "replenish_tokens": 250_000,
    "replenish_mode": "reset",
    "limits": {"standard": {"calls": 40, "tokens": 120_000}, "premium": {"calls": 0, "tokens": 0}},
    "max_budget_usd": "25",
}


@pytest.fixture
def acme(world: World) -> str:
    """`acme-rockets-international` (a long id, as apps make them) with calls; `globex` beside it."""
    tier = world.add_tier(TIER)
    world.give_customer("acme-rockets-international", 123_456, name="Acme Rockets International")
    assign(world, "acme-rockets-international", tier)
    world.give_customer("globex", 9_999, name="Globex Corporation")
    for user in ["acme-rockets-international"] * 3 + ["globex"]:
        assert chat(world.url, world.key, user).status_code == 200
    link = links.issue(
        db.session, world.customer("acme-rockets-international"), world.secret_key, now_utc(), 30
    )
    world.commit()
    return f"{world.url}/portal/{link.token}"


def fits(page: Page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, (width, inner)


def test_a_link_reads_well_on_a_phone_with_no_way_into_the_admin(
    page: Page, world: World, acme, tmp_path: Path
):
    refused: list[str] = []  # what the page's Content-Security-Policy blocked, if anything
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(acme)
    balance = f"{world.customer('acme-rockets-international').token_balance:,}"
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Rockets International")
    expect(page.locator("#balance")).to_have_text(balance)
    expect(page.locator("#plan")).to_have_text("Growth")
    expect(page.locator("#use-standard")).to_contain_text("3 of 40")
    expect(page.locator("#use-premium")).to_contain_text("none allowed")
    expect(page.locator(".portal-calls tbody tr")).to_have_count(3)
    expect(page.get_by_text("Globex")).to_have_count(0)
    fits(page)
    assert page.locator('a[href^="/customers"], a[href="/"], a[href^="/dashboard"], nav, form').count() == 0
    page.screenshot(path=str(tmp_path / "portal-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    fits(page)
    page.screenshot(path=str(tmp_path / "portal-1280.png"), full_page=True)
    assert refused == []
    print(f"portal screenshots: {tmp_path}")


def test_the_admins_copy_usage_link_makes_a_link_that_opens(
    admin: Page, chromium, world: World, live_url, tmp_path: Path
):
    world.give_customer("acme", 4_321, name="Acme Rockets")
    admin.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    admin.goto("/customers/acme")
    admin.get_by_role("button", name="Copy usage link").click()  # one click: made, shown, copied
    shown = admin.get_by_label("Usage link")
    expect(shown).to_have_value(re.compile(f"^{re.escape(live_url)}/portal/"))
    expect(admin.locator("#usage-link .copied")).to_have_text("Copied")
    url = shown.input_value()
    assert admin.evaluate("navigator.clipboard.readText()") == url
    assert admin.url == f"{live_url}/customers/acme"  # a reload makes no other link
    admin.locator("#usage-link").screenshot(path=str(tmp_path / "admin-usage-link-1280.png"))
    admin.set_viewport_size({"width": 375, "height": 800})
    fits(admin)
    admin.screenshot(path=str(tmp_path / "admin-usage-link-375.png"), full_page=True)

    customer = chromium.new_context(viewport={"width": 375, "height": 800})  # the customer's own browser
    try:
        tab = customer.new_page()
        tab.goto(url)
        expect(tab.get_by_role("heading", level=1)).to_have_text("Acme Rockets")
        expect(tab.locator("#balance")).to_have_text("4,321")
        fits(tab)
        admin.get_by_text("Revoke all usage links…").click()  # asks first
        admin.get_by_role("button", name="Yes, revoke all usage links").click()
        expect(admin.get_by_role("status").first).to_have_text(
            "All usage links of this customer were revoked. Links made from now on work."
        )
        answer = tab.goto(url)
        assert answer is not None and answer.status == 404
        expect(tab.get_by_role("heading", level=1)).to_have_text("Link not valid")
    finally:
        customer.close()


class Embedder(BaseHTTPRequestHandler):
    """The operator's app: a page that frames the URL in its query string."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        src = html.escape(query.get("src", ["about:blank"])[0])
        width = int(query.get("width", ["400"])[0])
        body = (
            '<!doctype html><body style="margin:0">'
            f'<iframe src="{src}" width="{width}" height="900" style="border:0"></iframe>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def embedder() -> Iterator[str]:
    """The operator's app on a loopback origin of its own (another port than the gateway's: Chromium
    refuses a frame of a loopback address from a page that is not on one)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Embedder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def framed(page: Page) -> str:
    """The URL the page's iframe shows once the page has loaded (its frames included): Chromium's
    error page when the frame was refused."""
    [_, frame] = page.frames
    return frame.url


def test_only_the_listed_origins_may_frame_the_page(page: Page, world: World, acme, embedder):
    page.goto(f"{embedder}/?{urlencode({'src': acme})}")
    assert framed(page).startswith("chrome-error://")  # refused: no origin listed
    world.set(portal_frame_origins=[embedder])
    page.reload()
    assert framed(page) == acme
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", level=1)).to_have_text("Acme Rockets International")
    expect(frame.locator("#balance")).to_be_visible()
    world.set(portal_frame_origins=["https://app.example.com"])
    page.reload()
    assert framed(page).startswith("chrome-error://")


# Every word of these on one line: a figure or a label broken mid-word reads as two figures.
BROKEN_WORDS = """selector => {
  const broken = [];
  for (const element of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const rects = [...range.getClientRects()].filter(r => r.width > 0);
        const lines = new Set(rects.map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""
WORDS = ".portal-head, .portal-notice, .portal-figures, .portal-limits, .portal-calls"


def test_narrow_phones_and_frames_break_no_figure_or_label_mid_word(
    page: Page, world: World, embedder, tmp_path: Path
):
    """At 320 and 375 px and in a 343 px iframe: no word split across lines, no sideways scroll; a
    customer named by its id shows it once, a blocked one reads why its calls are refused."""
    tier = world.add_tier({**TIER, "key": "tiny", "name": "Starter monthly replenishment"})
    world.give_customer("acme", 987_654_321)  # its name is its id
    assign(world, "acme", tier)
    for _ in range(2):
        assert chat(world.url, world.key, "acme").status_code == 200
    world.set(portal_frame_origins=[embedder])
    world.customer("acme").blocked = True
    world.commit()
    link = links.issue(db.session, world.customer("acme"), world.secret_key, now_utc(), 30)
    world.commit()
    url = f"{world.url}/portal/{link.token}"
    for width in (320, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        expect(page.locator("#notice")).to_have_text("Access is paused: calls are refused. Contact Test.")
        expect(page.get_by_text("acme", exact=True)).to_have_count(1)  # the heading, not "Account acme"
        page.screenshot(path=str(tmp_path / f"portal-narrow-{width}.png"), full_page=True)
        assert page.evaluate(BROKEN_WORDS, WORDS) == [], width
        fits(page)
    page.set_viewport_size({"width": 400, "height": 1000})
    page.goto(f"{embedder}/?{urlencode({'src': url, 'width': 343})}")
    frame = page.frames[1]
    expect(page.frame_locator("iframe").locator("#notice")).to_contain_text("Access is paused")
    assert frame.evaluate(BROKEN_WORDS, WORDS) == []
    assert frame.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "portal-iframe-343.png"), full_page=True)
    print(f"portal screenshots: {tmp_path}")
