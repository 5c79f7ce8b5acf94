"""The customers list and customer page as a new user meets them: the filter card as one tidy row,
"Select all" in the approval queue, the customer tabs on a phone (trial findings, issue 16)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.factories import World


def box(page: Page, selector: str) -> dict:
    found = page.locator(selector).bounding_box()
    assert found is not None, selector
    return found


def test_the_filter_card_is_a_tidy_row_that_wraps_on_a_phone(admin: Page, world: World, tmp_path: Path):
    world.set(low_balance_tokens=100)
    admin.goto("/customers")
    search, tier, button = box(admin, "#q"), box(admin, "#tier-filter"), box(admin, ".filters button")
    card = box(admin, "form.filters")
    admin.screenshot(path=str(tmp_path / "customers-filters-1280.png"))
    # The inputs and the button share one line, left to right, and the search starts at the card's left.
    assert (
        abs(search["y"] - tier["y"]) < 2
        and abs(search["y"] + search["height"] - button["y"] - button["height"]) < 2
    )
    assert search["x"] < card["x"] + 40 and search["x"] + search["width"] < tier["x"] < button["x"]
    assert search["width"] > card["width"] * 0.35  # the search is the widest field, not squeezed right
    label = box(admin, "label[for=q]")
    assert label["y"] + label["height"] <= search["y"] + 1 and abs(label["x"] - search["x"]) < 2  # above it
    admin.set_viewport_size({"width": 375, "height": 800})
    assert admin.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    search, tier = box(admin, "#q"), box(admin, "#tier-filter")
    assert tier["y"] > search["y"] + search["height"]  # wrapped, one field a line
    admin.screenshot(path=str(tmp_path / "customers-filters-375.png"))
    print(f"screenshots: {tmp_path}")


def test_select_all_ticks_every_customer_of_the_approval_queue(admin: Page, world: World, tmp_path: Path):
    for customer_id in ("amy", "bob", "cyd"):
        world.give_customer(customer_id, 0)
    admin.goto("/customers?awaiting=1")
    picks = admin.locator('input[name="approve_ids"]')
    expect(picks).to_have_count(3)
    everyone = admin.get_by_label("Select all")
    everyone.check()
    for i in range(3):
        expect(picks.nth(i)).to_be_checked()
    picks.nth(1).uncheck()
    expect(everyone).not_to_be_checked()
    assert admin.evaluate("document.querySelector('[data-select-all]').indeterminate")
    everyone.check()
    admin.get_by_label("Tokens to credit").fill("50")
    admin.get_by_role("button", name="Approve selected").click()
    expect(admin.get_by_text("No customer is awaiting approval.")).to_be_visible()
    assert [world.customer(c).token_balance for c in ("amy", "bob", "cyd")] == [50, 50, 50]
    admin.screenshot(path=str(tmp_path / "queue-approved-1280.png"))


def test_the_customer_tabs_fit_one_line_on_a_phone(admin: Page, world: World, tmp_path: Path):
    world.give_customer("acme", 1000)
    admin.set_viewport_size({"width": 375, "height": 800})
    admin.goto("/customers/acme?tab=usage")
    tops = admin.locator("nav.tabs a").evaluate_all("links => links.map(a => a.getBoundingClientRect().top)")
    assert len(tops) == 4 and max(tops) - min(tops) < 2, tops  # one row: "Requests" not alone below
    expect(admin.get_by_role("link", name="Usage", exact=True)).to_be_visible()  # "& Limits" hidden
    assert admin.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    admin.screenshot(path=str(tmp_path / "customer-usage-375.png"), full_page=True)
    admin.set_viewport_size({"width": 1280, "height": 900})
    expect(admin.get_by_role("link", name="Usage & Limits", exact=True)).to_be_visible()
