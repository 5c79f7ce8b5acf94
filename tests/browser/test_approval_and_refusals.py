"""Approval and refused calls in the browser (issue 16, acceptance 1 and 2), against the live gateway:
a first call refused for want of tokens, the customer found in the approval queue and approved on
its page, its next call served; then three kinds of refusal shown in its Requests tab, as the API
reports them. Screenshots of the pages at desktop and phone widths are left in the test's tmp_path.
"""

from __future__ import annotations

import re
from pathlib import Path

import requests

from app.formatting import tokens
from tests.conftest import MASTER_KEY
from tests.factories import World, assign, chat

try:
    from playwright.sync_api import Page, expect
except ImportError as missing:  # fail loudly: the browser tests never skip
    raise ImportError(
        "Playwright for Python is not installed: run `.venv/bin/pip install -e '.[dev]'`"
    ) from missing

PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}


def api(world: World, method: str, path: str, **kw) -> requests.Response:
    return requests.request(
        method, f"{world.url}/api{path}", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10, **kw
    )


def flash(page: Page):
    return page.get_by_role("status")


def shoot(page: Page, folder: Path, name: str) -> None:
    """The page at desktop and phone widths; at the phone's, nothing may scroll sideways."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (name, widths)
    page.set_viewport_size(DESKTOP)


def test_a_refused_newcomer_is_approved_from_the_queue_and_served(admin: Page, world: World, tmp_path: Path):
    world.set(new_customer_initial_tokens=0, approval_tokens=5000)  # "no access until approved"
    refused = chat(world.url, world.key, "newbie")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_tokens"

    admin.reload()
    expect(admin.get_by_role("row").filter(has_text="newbie")).to_contain_text("awaiting approval")
    admin.get_by_label("Awaiting approval").check()
    admin.get_by_role("button", name="Filter").click()
    expect(admin).to_have_url(re.compile(r"/customers\?.*awaiting=1"))
    admin.goto("/dashboard")  # the dashboard counts the queue and leads to it
    headlines = admin.get_by_role("region", name=re.compile("^Headline numbers"))
    awaiting = headlines.get_by_role("link", name=re.compile("^Awaiting approval"))
    expect(awaiting.locator(".headline-value")).to_have_text("1")
    awaiting.click()
    expect(admin).to_have_url(re.compile(r"/customers\?awaiting=1$"))
    queue = admin.get_by_role("region", name=re.compile("^Awaiting approval"))
    expect(queue).to_contain_text("1 customer, oldest first")
    expect(queue.get_by_role("checkbox", name="Approve newbie")).not_to_be_checked()
    shoot(admin, tmp_path, "customers-awaiting")

    queue.get_by_role("link", name="newbie").click()
    expect(admin.get_by_role("heading", level=1)).to_contain_text("Awaiting approval")
    approval = admin.get_by_role("region", name="Awaiting approval")
    expect(approval.get_by_label("Tokens to credit")).to_have_value("5000")
    shoot(admin, tmp_path, "customer-awaiting")
    approval.get_by_role("button", name="Approve").click()
    expect(flash(admin)).to_have_text("Approved: 5,000 tokens credited, balance 5,000.")
    expect(admin.get_by_role("heading", level=1)).not_to_contain_text("Awaiting approval")

    served = chat(world.url, world.key, "newbie")
    assert served.status_code == 200, served.text
    [approved] = api(world, "GET", "/events?type=customer.approved").json()["data"]
    assert (approved["customer_id"], approved["data"]["tokens"]) == ("newbie", 5000)
    admin.goto("/customers?awaiting=1")
    expect(admin.get_by_text("No customer is awaiting approval.")).to_be_visible()


def test_three_kinds_of_refusal_show_in_the_requests_tab_as_the_api_reports_them(
    admin: Page, world: World, app, tmp_path: Path
):
    capped = world.add_tier(
        {
            "key": "capped",
            "name": "Capped",
            "limits": {"standard": {"calls": 1, "tokens": None}},
            "on_limit": "block",
        }
    )
    world.give_customer("c", 0)
    assign(world, "c", capped)
    codes = [chat(world.url, world.key, "c").json()["error"]["code"]]  # no tokens yet
    assert api(world, "POST", "/customers/c/tokens", json={"amount": 50_000}).status_code == 200
    assert chat(world.url, world.key, "c").status_code == 200  # the tier's one call
    codes.append(chat(world.url, world.key, "c").json()["error"]["code"])
    assert api(world, "PATCH", "/customers/c", json={"blocked": True}).status_code == 200
    codes.append(chat(world.url, world.key, "c").json()["error"]["code"])
    assert codes == ["insufficient_tokens", "usage_limit_reached", "customer_blocked"]
    app.extensions["tollgate.gateway"].refusals.flush()  # what the gateway's flusher does every 2 s

    admin.goto("/customers/c?tab=requests")
    refused = admin.locator("tr.refused-line")
    expect(refused).to_have_count(3, timeout=10_000)
    for code in codes:
        expect(admin.locator(f'tr.refused-line[data-code="{code}"]')).to_contain_text(f"refused · {code}")
    expect(refused.first).to_contain_text("customer_blocked")  # newest first
    expect(admin.locator("table.requests tbody tr:not(.refused-line)")).to_have_count(1)  # the served call
    shoot(admin, tmp_path, "customer-requests")

    reported = api(world, "GET", "/customers/c/refusals").json()
    assert sorted(h["code"] for h in reported["hours"]) == sorted(codes)
    assert reported["last"]["code"] == "customer_blocked"
    for hour in reported["hours"]:
        line = admin.locator(f'tr.refused-line[data-code="{hour["code"]}"]')
        expect(line).to_contain_text(f"\u00d7 {tokens(hour['count'])}")
        expect(line).to_contain_text(hour["model"])
        expect(line).to_contain_text(hour["message"])

    admin.goto("/customers?refused=1")
    expect(admin.get_by_role("link", name="3 refused · 24 h")).to_have_attribute(
        "href", "/customers/c?tab=requests"
    )
    shoot(admin, tmp_path, "customers-refused")
