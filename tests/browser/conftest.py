"""Headless Chromium driving the web admin of the live gateway (issue 5, acceptance 1).

One Playwright and one browser for the run of this package, a fresh context (cookies, storage) per
test. The browser is Debian's `chromium`, launched from its path: nothing is downloaded at run time.
When Playwright or Chromium is missing the tests fail with the fix in the message; they never skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from flask import Flask

from app.cli import add_admin
from app.extensions import db
from tests.factories import World

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # the machines are offline: no update or safe-browsing calls
]
OWNER = "owner@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="package")
def chromium():
    """The browser; a missing Playwright or Chromium is a failure, not a skip.

    Package scope, not session: between its calls Playwright's sync API leaves its asyncio loop
    marked as running on the main thread, which would break any later test that runs a loop.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is not installed: run `.venv/bin/pip install -e '.[dev]'` "
            "(the browser tests never skip).",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `apt-get install chromium` (.ci/run does); "
            "the browser tests use Debian's Chromium and never download one.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_url: str):
    """A fresh browser context and tab, addressed relative to the live gateway."""
    context = chromium.new_context(base_url=live_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def owner(app: Flask, world: World) -> Iterator[None]:
    """An owner admin in the database; the sign-in throttle starts fresh for the next test."""
    add_admin(OWNER, PASSWORD)
    db.session.commit()
    yield
    app.extensions["tollgate.signin_throttle"].__init__(None)


def sign_in(page, email: str = OWNER, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def admin(page, owner, live_url: str):
    """A tab signed in as the owner through the real sign-in page, on the customers list."""
    from playwright.sync_api import expect

    page.goto("/customers")
    expect(page).to_have_url(re.compile(r"/auth/sign-in\?next="))
    sign_in(page)
    expect(page).to_have_url(f"{live_url}/customers")
    return page
