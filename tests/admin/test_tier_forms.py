"""Creating and editing usage tier versions from the admin (issue 5: build 5, acceptance 5)."""

from __future__ import annotations

import html
import re

import pytest

from app.extensions import db
from app.models.tier import UsageTier
from app.tiers.spec import FIELDS, tier_spec
from tests.admin.test_sign_in_and_customers import client_for, csrf, form_post, sign_in
from tests.factories import World, assign, chat

EVERY_FIELD = {
    "key": "growth",
    "name": "Growth",
    "description": "For teams that grow",
    "prepaid": "y",
    "period": "month",
    "anchor": "assignment",
    "replenish_tokens": "500000",
    "replenish_mode": "add",
    "max_balance": "2000000",
    "limits-standard-calls": "1000",
    "limits-standard-tokens": "",
    "limits-premium-calls": "50",
    "limits-premium-tokens": "250000",
    "on_limit": "restrict",
    "restrict_to": "standard",
    "max_budget_usd": "40.50",
    "soft_budget_usd": "30",
    "model_budgets_usd": "gpt-test = 12.25\nother-model = 0.000000001",
    "rpm_limit": "60",
    "tpm_limit": "90000",
    "max_parallel_requests": "4",
    "default_reserve_tokens": "512",
    # hard_cap unticked: a checkbox left out of the form is false
}


def _tiers() -> list[dict]:
    db.session.expire_all()
    return [tier_spec(t) for t in db.session.scalars(db.select(UsageTier).order_by(UsageTier.id))]


def test_a_tier_created_from_the_form_has_every_field(owner, world: World):
    page = owner.get("/tiers/new").data.decode()
    for name in ("limits-reasoning-tokens", "model_budgets_usd", "max_parallel_requests", "hard_cap"):
        assert f'name="{name}"' in page
    made = form_post(owner, "/tiers/new", EVERY_FIELD, "/tiers/new")
    assert made.status_code == 302, made.data.decode()
    assert "Created growth v1." in owner.get("/tiers").data.decode()
    growth = next(t for t in _tiers() if t["key"] == "growth")
    assert growth == {
        "key": "growth",
        "version": 1,
        "name": "Growth",
        "description": "For teams that grow",
        "prepaid": True,
        "period": "month",
        "anchor": "assignment",
        "replenish_tokens": 500_000,
        "replenish_mode": "add",
        "max_balance": 2_000_000,
        "limits": {"standard": {"calls": 1000, "tokens": None}, "premium": {"calls": 50, "tokens": 250_000}},
        "on_limit": "restrict",
        "restrict_to": "standard",
        "max_budget_usd": "40.500000000",
        "soft_budget_usd": "30.000000000",
        "model_budgets_usd": {"gpt-test": "12.250000000", "other-model": "0.000000001"},
        "rpm_limit": 60,
        "tpm_limit": 90_000,
        "max_parallel_requests": 4,
        "default_reserve_tokens": 512,
        "hard_cap": False,
        "locked": False,
    }


# The API's names of the form's fields: the admin never shows them (issue 16: the labels' words).
CODE_NAMES = re.compile(r"\b(?:" + "|".join(name for name in FIELDS if "_" in name) + r")\b")


def summary(page: str) -> tuple[str, dict[str, str]]:
    """The error summary at the top of the form: its heading, and its items as {field id: text}
    (the id "" for an item about the whole form)."""
    box = re.search(r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', page, re.S)
    assert box, "no error summary on the page"
    heading = re.search(r"<h2>(.*?)</h2>", box.group(1)).group(1)
    items = {}
    for item in re.findall(r"<li>(.*?)</li>", box.group(1), re.S):
        link = re.fullmatch(r'<a href="#([^"]+)">(.*?)</a>', item.strip(), re.S)
        items[link.group(1) if link else ""] = html.unescape(link.group(2) if link else item.strip())
    return heading, items


def error_next_to(page: str, field_id: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)) if found else None


@pytest.mark.parametrize(
    ("bad", "field_id", "said"),
    [
        ({"key": "Not A Slug"}, "key", "Use lower-case letters, digits, - and _ only"),
        ({"key": "default"}, "key", "Tier 'default' already exists"),
        ({"name": ""}, "name", "A name is required."),
        ({"period": "fortnight"}, "period", "Enter a period such as month, week, 30d or 12h"),
        ({"period": "1 week"}, "period", "Enter “week” for the calendar week, or “7d” for a week counted"),
        ({"max_budget_usd": "12.3.4"}, "max_budget_usd", "Enter an amount in dollars"),
        ({"max_budget_usd": "1e400"}, "max_budget_usd", "Enter an amount in dollars, like 25 or 9.99."),
        ({"max_budget_usd": "99999999999"}, "max_budget_usd", "Enter an amount below $9,223,372,036."),
        ({"max_budget_usd": "0.0000000001"}, "max_budget_usd", "Enter at most 9 decimals"),
        ({"soft_budget_usd": "-5"}, "soft_budget_usd", "Enter an amount of 0 or more"),
        ({"model_budgets_usd": "gpt-test 12"}, "model_budgets_usd", "Line 1: write it as “model = USD”"),
        ({"model_budgets_usd": "gpt-test = lots"}, "model_budgets_usd", "Line 1: enter an amount in dollars"),
        ({"limits-premium-calls": "-1"}, "limits-premium-calls", "Enter a whole number from 0"),
        ({"rpm_limit": "0"}, "rpm_limit", "Enter a whole number from 1"),
        ({"on_limit": "restrict", "restrict_to": ""}, "restrict_to", "Choose the model tier to restrict to"),
        ({"default_reserve_tokens": ""}, "default_reserve_tokens", "Enter a whole number of tokens."),
        ({"on_limit": "block"}, "restrict_to", "“Restrict to” is used only when"),
        ({"period": "none"}, "period", "Tokens per replenishment needs a replenishment period"),
        (
            {"soft_budget_usd": "41"},
            "soft_budget_usd",
            "Soft budget per period (USD) must not be above the budget per period (USD).",
        ),
    ],
)
def test_bad_tier_input_is_summarised_and_shown_next_to_the_field_in_the_labels_words(
    owner, world: World, bad, field_id, said
):
    before = _tiers()
    resp = form_post(owner, "/tiers/new", {**EVERY_FIELD, **bad}, "/tiers/new")
    page = resp.data.decode()
    assert resp.status_code == 400
    heading, items = summary(page)
    assert heading == "Fix 1 problem below" and list(items) == [field_id], items
    assert said in items[field_id] and said in (error_next_to(page, field_id) or ""), page[-3000:]
    assert not CODE_NAMES.search(items[field_id] + error_next_to(page, field_id)), items
    tag = re.search(rf'<(?:input|select|textarea)\b[^>]*\bid="{field_id}"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in tag and f"{field_id}-error" in tag  # says so, and points at why
    assert page.index('class="error-summary"') < page.index("<fieldset")  # at the top of the form
    assert _tiers() == before


def test_the_summary_counts_every_problem_and_names_nested_fields_by_their_row(owner, world: World):
    bad = {**EVERY_FIELD, "name": "", "limits-premium-calls": "-1", "rpm_limit": "0"}
    page = form_post(owner, "/tiers/new", bad, "/tiers/new").data.decode()
    heading, items = summary(page)
    assert heading == "Fix 3 problems below"
    assert list(items) == ["name", "limits-premium-calls", "rpm_limit"]  # in the form's order
    assert items["limits-premium-calls"] == "Premium calls: Enter a whole number from 0, or leave it empty."
    assert items["rpm_limit"].startswith("Requests per minute: Enter a whole number from 1")


# The new-user trial of issue 16: four mistakes, one Save.
FOUR_MISTAKES = {"period": "fortnight", "max_budget_usd": "abc", "model_budgets_usd": "gpt4o 25"}
FOUR_MISTAKES |= {"on_limit": "block", "restrict_to": "standard"}


def test_one_submit_lists_every_problem_in_plain_words(owner, world: World):
    form_post(owner, "/tiers/new", {**EVERY_FIELD, "on_limit": "block", "restrict_to": ""}, "/tiers/new")
    before = _tiers()
    resp = form_post(
        owner,
        "/tiers/growth/versions/1/edit",
        {**EVERY_FIELD, **FOUR_MISTAKES},
        "/tiers/growth/versions/1/edit",
    )
    page = resp.data.decode()
    assert resp.status_code == 400
    heading, items = summary(page)
    assert heading == "Fix 4 problems below"
    assert items == {
        "period": "Enter a period such as month, week, 30d or 12h (or none: limits never reset).",
        "restrict_to": "“Restrict to” is used only when “When a limit is reached” is restrict: set it to "
        "“—”, or choose restrict.",
        "max_budget_usd": "Budget per period (USD): Enter an amount in dollars, like 25 or 9.99.",
        "model_budgets_usd": "Budgets per model (USD): Line 1: write it as “model = USD”, like gpt-4o = 25.",
    }
    assert not re.search(r"invalid period|not a money amount|must be finite|<n>s\|m", page)
    assert _tiers() == before


def test_every_bad_per_model_budget_line_is_named(owner, world: World):
    lines = "gpt-test = 1\nbad line\ngpt-test = 2\nother = $4\nthird = -1"
    page = form_post(
        owner, "/tiers/new", {**EVERY_FIELD, "model_budgets_usd": lines}, "/tiers/new"
    ).data.decode()
    error = error_next_to(page, "model_budgets_usd") or ""
    assert "Line 2: write it as" in error and "Line 3: gpt-test is listed twice." in error
    assert "Line 5: enter an amount of 0 or more" in error and "Line 4" not in error
    assert summary(page)[0] == "Fix 3 problems below"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("30 days", "30d"),
        ("2 weeks", "14d"),
        ("every 12 hours", "12h"),
        ("Monthly", "month"),
        ("3 MO", "3mo"),
    ],
)
def test_a_period_is_taken_as_people_write_it(owner, world: World, typed, stored):
    made = form_post(owner, "/tiers/new", {**EVERY_FIELD, "period": typed}, "/tiers/new")
    assert made.status_code == 302, made.data.decode()[-2000:]
    assert next(t for t in _tiers() if t["key"] == "growth")["period"] == stored


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("3M", "Enter “3mo” for three months or “3m” for three minutes"),  # not silently 3 minutes
        ("9" * 5000, "Enter a period such as"),  # past int()'s digit limit: an error, not a 500
    ],
)
def test_a_period_that_could_mean_two_things_or_nothing_is_asked_back(owner, world: World, typed, said):
    refused = form_post(owner, "/tiers/new", {**EVERY_FIELD, "period": typed}, "/tiers/new")
    assert refused.status_code == 400
    assert said in summary(refused.data.decode())[1]["period"]
    assert not any(t["key"] == "growth" for t in _tiers())


def test_dollar_signs_are_taken_and_a_soft_budget_above_the_budget_is_said_with_the_rest(owner, world: World):
    made = form_post(
        owner,
        "/tiers/new",
        {**EVERY_FIELD, "max_budget_usd": "$40.50", "soft_budget_usd": "30 USD"},
        "/tiers/new",
    )
    assert made.status_code == 302
    growth = next(t for t in _tiers() if t["key"] == "growth")
    assert (growth["max_budget_usd"], growth["soft_budget_usd"]) == ("40.500000000", "30.000000000")
    bad = {**EVERY_FIELD, "key": "other", "soft_budget_usd": "50", "name": "", "period": "none"}
    heading, items = summary(form_post(owner, "/tiers/new", bad, "/tiers/new").data.decode())
    assert heading == "Fix 3 problems below" and list(items) == ["name", "period", "soft_budget_usd"]
    assert items["period"].startswith("Tokens per replenishment needs a replenishment period")
    assert (
        items["soft_budget_usd"]
        == "Soft budget per period (USD) must not be above the budget per period (USD)."
    )


def test_a_valid_form_has_no_summary(owner, world: World):
    assert 'class="error-summary"' not in owner.get("/tiers/new").data.decode()
    assert form_post(owner, "/tiers/new", EVERY_FIELD, "/tiers/new").status_code == 302


def test_an_unlocked_version_is_edited_and_the_proxy_applies_it(owner, world: World, app):
    form_post(owner, "/tiers/new", {**EVERY_FIELD, "on_limit": "block", "restrict_to": ""}, "/tiers/new")
    page = owner.get("/tiers/growth/versions/1/edit").data.decode()
    assert 'value="Growth"' in page and 'value="40.50"' in page and "gpt-test = 12.25" in page
    saved = form_post(
        owner,
        "/tiers/growth/versions/1/edit",
        {
            **EVERY_FIELD,
            "key": "ignored",
            "name": "Growth+",
            "limits-standard-calls": "1",
            "on_limit": "block",
            "restrict_to": "",
        },
        "/tiers/growth/versions/1/edit",
    )
    assert saved.status_code == 302
    growth = next(t for t in _tiers() if t["key"] == "growth")
    assert growth["name"] == "Growth+" and growth["limits"]["standard"] == {"calls": 1, "tokens": None}
    tier = db.session.scalar(db.select(UsageTier).where(UsageTier.key == "growth"))
    world.give_customer("acme2", 100_000)
    assign(world, "acme2", tier)
    app.extensions["tollgate.gateway"].cache.invalidate()
    assert chat(world.url, world.key, "acme2").status_code == 200
    second = chat(world.url, world.key, "acme2")
    assert second.status_code == 429 and second.json()["error"]["code"] == "usage_limit_reached"


LOCKED_V1 = (
    "v1 is locked because customers have used it; its rules can't change. Clone it to make a new version "
    "(v{}) you can edit and migrate customers to."
)


def test_a_locked_version_reads_only_and_refuses_edits_and_offers_a_clone(owner, world: World):
    default = db.session.get(UsageTier, world.project.default_tier_id)
    assert default.locked  # acme is on it
    page = owner.get("/tiers/default/versions/1/edit")
    text = html.unescape(page.data.decode())
    assert page.status_code == 200 and LOCKED_V1.format(2) in text and "Clone to v2" in text
    assert 'role="alert"' not in text and "tier default v1 is locked" not in text
    assert '<fieldset class="bare" disabled>' in text  # around every control, selects included
    form = text[text.index('<form class="card tier-form"') :]
    inside = form[form.index('<fieldset class="bare" disabled>') :]
    assert inside.count("<select") == form.count("<select") == 4 and inside.count("<textarea") == 2
    assert "Save v1" not in text
    before = _tiers()
    token = csrf(page.data)
    refused = owner.post(
        "/tiers/default/versions/1/edit",
        data={**EVERY_FIELD, "key": "default", "name": "Changed", "period": "fortnight", "csrf_token": token},
    )
    refused_text = html.unescape(refused.data.decode())
    assert refused.status_code == 409 and LOCKED_V1.format(2) in refused_text
    assert "Enter a period" not in refused_text and 'value="Changed"' not in refused_text  # v1 as stored
    assert _tiers() == before
    cloned = owner.post("/tiers/default/versions/1/clone", data={"csrf_token": token})
    assert cloned.status_code == 302 and cloned.headers["Location"].endswith("/tiers/default/versions/2/edit")
    copy = owner.get("/tiers/default/versions/2/edit")
    assert (
        copy.status_code == 200 and "Save v2" in copy.data.decode() and "is locked" not in copy.data.decode()
    )
    # With v2 there, v1's notice and button both name v3: the version a clone makes now.
    again = html.unescape(owner.get("/tiers/default/versions/1/edit").data.decode())
    assert LOCKED_V1.format(3) in again and "Clone to v3" in again
    listing = owner.get("/tiers").data.decode()
    assert (
        'aria-label="View default v1">View</a>' in listing
        and 'aria-label="Edit default v2">Edit</a>' in listing
    )
    assert "Edit default v1" not in listing


def test_a_viewer_reads_why_a_version_is_locked_without_the_clone(owner, app, world: World):
    viewer = client_for(app)
    sign_in(viewer, "viewer@example.com")
    text = html.unescape(viewer.get("/tiers/default/versions/1/edit").data.decode())
    assert "v1 is locked because customers have used it; its rules can't change." in text
    assert "Clone" not in text


def test_missing_versions_are_404(owner, world: World):
    assert owner.get("/tiers/default/versions/9/edit").status_code == 404
    assert owner.get("/tiers/nope/versions/1/edit").status_code == 404
