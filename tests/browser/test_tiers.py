"""The usage tiers pages in headless Chromium (issue 16, acceptance 4): every version's limits at a
glance, migrate with version pickers and a preview of who moves, the default-tier offer after a
migrate off the default, form errors summarised at the top; at 1280 px and at 375 px without
sideways scroll. Screenshots of each page at both widths go to `<pytest basetemp>/screenshots/`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.extensions import db
from app.models.project import Project
from tests.browser.test_admin_flows import open_section, tier_version
from tests.factories import World, assign, chat

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


# True when no word of the element's text is split across lines: each word, measured alone, sits on
# one line (a Range over it has a single client rect).
WORDS_UNBROKEN = """element => {
    const text = element.firstChild && element.firstChild.nodeType === 3 ? element.firstChild : null;
    if (!text) return true;
    const range = document.createRange();
    for (const match of text.data.matchAll(/\\S+/g)) {
        range.setStart(text, match.index);
        range.setEnd(text, match.index + match[0].length);
        if (range.getClientRects().length > 1) return false;
    }
    return true;
}"""


@pytest.fixture
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


def fits_a_phone(page: Page, shots: Path, name: str) -> None:
    """The page at 375 px has no sideways scroll; a screenshot at each width for people to look at."""
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=str(shots / f"{name}-375.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(shots / f"{name}-1280.png"), full_page=True)
    assert overflow <= 0, f"{name}: {overflow}px of sideways scroll at 375 px"


@pytest.fixture
def plans(world: World):
    """Tier `pro` v1 with limits that read "none allowed" and "no limit", three customers on it,
    and its editable v2."""
    from app.tiers.operations import clone_tier

    pro = world.add_tier(
        {
            "key": "pro",
            "name": "Pro",
            "period": "month",
            "replenish_tokens": 2_000_000,
            "limits": {"standard": {"calls": 500, "tokens": None}, "premium": {"calls": 0, "tokens": None}},
            "max_budget_usd": "25",
            "rpm_limit": 600,
        }
    )
    for n, name in enumerate(("Ada Lovelace", "Grace Hopper", "Katherine Johnson")):
        world.give_customer(f"cust-{n}", 10_000 * (n + 1), name=name)
        assign(world, f"cust-{n}", pro)
    clone_tier(db.session, pro)
    world.commit()
    return pro


def test_tier_list_shows_limits_at_a_glance_and_fits_a_phone(admin: Page, world: World, plans, shots):
    open_section(admin, "Usage tiers")
    pro_v1 = admin.locator("#tier-pro-v1")
    expect(
        pro_v1.locator("dt", has_text=re.compile("^Premium$")).locator("xpath=following-sibling::dd")
    ).to_have_text("none allowed")
    expect(
        pro_v1.locator("dt", has_text="Super premium").locator("xpath=following-sibling::dd")
    ).to_have_text("no limit")
    expect(pro_v1).to_contain_text("500 calls · no token limit")
    expect(pro_v1.get_by_role("link", name="3 customers on pro v1")).to_be_visible()
    expect(admin.locator("#tier-default-v1")).to_contain_text("Default for new customers")
    # At 1280 px: each header on whole words, and the badge inside the Version column.
    for header in admin.locator("table.tier-versions thead th").all():
        words = header.inner_text().split()
        assert header.evaluate(WORDS_UNBROKEN), f"{words} breaks inside a word"
    version_cell = admin.locator("#tier-default-v1 th").bounding_box()
    badge = admin.locator("#tier-default-v1 .badge.default").bounding_box()
    assert version_cell and badge and badge["x"] + badge["width"] <= version_cell["x"] + version_cell["width"]
    fits_a_phone(admin, shots, "tiers")
    # On a phone the actions are on screen, not off to the right.
    admin.set_viewport_size(PHONE)
    button = pro_v1.get_by_role("button", name="Make Pro v1 the default for new customers")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]

    admin.get_by_role("link", name="View pro v1").click()
    expect(admin.get_by_role("region", name="At a glance")).to_contain_text("none allowed")
    expect(admin.get_by_label("premium calls", exact=True)).to_have_value("0")
    expect(admin.get_by_label("super premium calls", exact=True)).to_have_attribute("placeholder", "no limit")
    fits_a_phone(admin, shots, "tier-version")

    admin.goto("/customers/cust-0?tab=usage")
    premium = admin.get_by_role("row").filter(has=admin.get_by_role("cell", name="premium", exact=True))
    expect(premium).to_contain_text("0 / none allowed")
    expect(premium.get_by_text("none allowed", exact=True)).to_be_visible()
    expect(
        admin.get_by_role("row").filter(has=admin.get_by_role("cell", name="super premium"))
    ).to_contain_text("no limit")
    fits_a_phone(admin, shots, "customer-usage")


def test_a_locked_version_reads_calmly_and_cannot_be_changed(admin: Page, world: World, plans, shots):
    console_errors: list[str] = []
    admin.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    open_section(admin, "Usage tiers")
    expect(admin.get_by_role("link", name="Edit pro v1")).to_have_count(0)  # v1 is locked
    expect(admin.get_by_role("link", name="Edit pro v2")).to_be_visible()  # its clone is not
    admin.get_by_role("link", name="View pro v1").click()
    notice = admin.get_by_role("note")
    expect(notice).to_contain_text(
        "v1 is locked because customers have used it; its rules can't change. Clone it to make a new "
        "version (v3) you can edit and migrate customers to."
    )
    expect(notice.get_by_role("button")).to_have_text("Clone to v3")  # the version the notice names
    expect(admin.get_by_role("alert")).to_have_count(0)  # nothing went wrong
    controls = admin.locator("form.tier-form").locator("input:not([type=hidden]), select, textarea")
    assert controls.count() > 20
    for n in range(controls.count()):
        expect(controls.nth(n)).to_be_disabled()
    for label in ("Anchor", "Replenish by", "When a limit is reached", "Restrict to"):
        expect(admin.get_by_label(label, exact=True)).to_be_disabled()
    expect(admin.get_by_role("button", name=re.compile("^Save"))).to_have_count(0)
    fits_a_phone(admin, shots, "tier-locked")
    assert console_errors == []  # the page answered 200, not 409
    notice.get_by_role("button", name="Clone to v3").click()
    expect(admin).to_have_url(re.compile(r"/tiers/pro/versions/3/edit$"))


def test_migrate_preview_then_the_default_offer_makes_the_new_version_the_default(
    admin: Page, world: World, app, shots
):
    default_v1 = tier_version(world, "default", 1)
    for n in range(3):
        world.give_customer(f"early-{n}", 500, name=f"Early bird {n}")  # on the default, v1
    open_section(admin, "Usage tiers")
    admin.get_by_role("button", name="Clone default v1").click()
    expect(admin).to_have_url(re.compile(r"/tiers/default/versions/2/edit$"))
    admin.get_by_label("Name", exact=True).fill("Starter")
    admin.get_by_label("premium calls", exact=True).fill("0")
    admin.get_by_role("button", name="Save v2").click()

    admin.get_by_role("link", name="Migrate customers…").click()
    from_version, to_version = admin.get_by_label("From version"), admin.get_by_label("To version")
    expect(from_version.locator("option")).to_have_text(
        [
            "v1 · Default New Customer Tier · 3 customers · default",
            "v2 · Starter · 0 customers",
        ]
    )
    from_version.select_option("1")
    to_version.select_option("2")
    admin.get_by_role("button", name="Preview who moves").click()
    preview = admin.get_by_role("region", name="3 customers would move from v1 to v2")
    for who in ("early-0", "early-1", "early-2"):
        expect(preview.get_by_role("row").filter(has=admin.locator("code", has_text=who))).to_have_count(1)
    expect(preview.get_by_role("row").filter(has_text="Early bird 2")).to_contain_text("500 tokens")
    expect(preview).to_contain_text("none allowed")  # what v2 holds for them, beside v1
    assert world.customer("early-0").tier_id == default_v1.id  # a preview moves nobody
    fits_a_phone(admin, shots, "tier-migrate-preview")

    preview.get_by_role("button", name="Move 3 customers to v2").click()
    expect(admin.get_by_role("status")).to_have_text("Moved 3 customers from default v1 to v2.")
    offer = admin.get_by_role("region", name="New customers still start on Default New Customer Tier v1")
    expect(offer).to_be_visible()
    fits_a_phone(admin, shots, "tier-migrated-offer")
    v2 = tier_version(world, "default", 2)
    assert world.customer("early-2").tier_id == v2.id

    offer.get_by_role("button", name="Make Starter v2 the default for new customers").click()
    expect(admin).to_have_url(re.compile(r"/tiers$"))
    expect(admin.get_by_role("status")).to_have_text("New customers now start on Starter (default v2).")
    expect(admin.locator("#tier-default-v2")).to_contain_text("Default for new customers")
    expect(admin.locator("#tier-default-v1")).not_to_contain_text("Default for new customers")
    db.session.expire_all()
    assert db.session.get(Project, world.project.id).default_tier_id == v2.id
    app.extensions["tollgate.gateway"].cache.invalidate()  # as the next stamp check would
    assert chat(world.url, world.key, "brand-new").status_code == 200
    assert world.customer("brand-new").tier_id == v2.id


def test_an_invalid_form_lists_every_problem_at_once_in_plain_words(admin: Page, world: World, shots):
    admin.goto("/tiers/new")
    admin.get_by_label("Key", exact=True).fill("growth")
    admin.get_by_label("Name", exact=True).fill("Growth")
    admin.get_by_label("Period", exact=True).fill("fortnight")
    admin.get_by_label("Budget per period (USD)", exact=True).fill("abc")
    admin.get_by_label("Budgets per model (USD)").fill("gpt4o 25")
    admin.get_by_label("Restrict to").select_option("standard")  # while a limit blocks
    admin.get_by_role("button", name="Create tier").click()
    summary = admin.get_by_role("alert")
    expect(summary.get_by_role("heading")).to_have_text("Fix 4 problems below")
    expect(summary).to_be_focused()  # a long form never hides why it came back
    expect(summary.get_by_role("link")).to_have_text(
        [
            re.compile(r"^Enter a period such as month, week, 30d or 12h"),
            re.compile(r"^“Restrict to” is used only when"),
            "Budget per period (USD): Enter an amount in dollars, like 25 or 9.99.",
            re.compile(r"Line 1: write it as “model = USD”"),
        ]
    )
    fits_a_phone(admin, shots, "tier-form-errors")
    summary.get_by_role("link").first.click()
    expect(admin.get_by_label("Period", exact=True)).to_be_in_viewport()
    expect(admin.get_by_label("Period", exact=True)).to_have_attribute("aria-invalid", "true")
    admin.get_by_label("Period", exact=True).fill("30 days")
    admin.get_by_label("Budget per period (USD)", exact=True).fill("$25")
    admin.get_by_label("Budgets per model (USD)").fill("gpt-4o = 9.99")
    admin.get_by_label("Restrict to").select_option("")
    admin.get_by_role("button", name="Create tier").click()
    expect(admin.get_by_text("Created growth v1.")).to_be_visible()
    expect(admin.locator("#tier-growth-v1")).to_contain_text("30d")
