"""Creating and editing usage tier versions from the admin (issue 5: build 5, acceptance 5)."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models.tier import UsageTier
from app.tiers.spec import tier_spec
from tests.admin.test_sign_in_and_customers import csrf, form_post
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


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"key": "Not A Slug"}, "key must be a slug"),
        ({"key": "default"}, "already exists"),
        ({"name": ""}, "A name is required."),
        ({"period": "fortnight"}, "period:"),
        ({"max_budget_usd": "12.3.4"}, "max_budget_usd:"),
        ({"soft_budget_usd": "-5"}, "soft_budget_usd:"),
        ({"model_budgets_usd": "gpt-test 12"}, "Line 1: write it as"),
        ({"model_budgets_usd": "gpt-test = lots"}, "model_budgets_usd:"),
        ({"limits-premium-calls": "-1"}, "Enter a whole number from 0"),
        ({"rpm_limit": "0"}, "Enter a whole number from 1"),
        ({"on_limit": "restrict", "restrict_to": ""}, "on_limit restrict needs restrict_to"),
        ({"default_reserve_tokens": ""}, "Enter a whole number of tokens."),
        ({"on_limit": "block"}, "restrict_to is used only with on_limit restrict"),
        ({"period": "none"}, "replenish_tokens needs a period"),
        ({"soft_budget_usd": "41"}, "soft_budget_usd must not be above max_budget_usd"),
    ],
)
def test_bad_tier_input_is_shown_next_to_the_field_and_changes_nothing(owner, world: World, bad, message):
    before = _tiers()
    resp = form_post(owner, "/tiers/new", {**EVERY_FIELD, **bad}, "/tiers/new")
    page = resp.data.decode()
    assert resp.status_code == 400 and message in page, page[-3000:]
    assert 'class="field-error"' in page or 'class="flash error"' in page
    assert _tiers() == before


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


def test_a_locked_version_refuses_edits_and_offers_a_clone(owner, world: World):
    default = db.session.get(UsageTier, world.project.default_tier_id)
    assert default.locked  # acme is on it
    page = owner.get("/tiers/default/versions/1/edit")
    text = page.data.decode()
    assert page.status_code == 409 and "is locked" in text and "Clone to v2" in text
    assert "<fieldset disabled>" in text.replace("fieldset  disabled", "fieldset disabled")
    before = _tiers()
    token = csrf(text.encode())
    refused = owner.post(
        "/tiers/default/versions/1/edit",
        data={**EVERY_FIELD, "key": "default", "name": "Changed", "csrf_token": token},
    )
    assert refused.status_code == 409 and "is locked" in refused.data.decode()
    assert _tiers() == before
    cloned = owner.post("/tiers/default/versions/1/clone", data={"csrf_token": token})
    assert cloned.status_code == 302 and cloned.headers["Location"].endswith("/tiers/default/versions/2/edit")
    copy = owner.get("/tiers/default/versions/2/edit")
    assert copy.status_code == 200 and "Save v2" in copy.data.decode()


def test_missing_versions_are_404(owner, world: World):
    assert owner.get("/tiers/default/versions/9/edit").status_code == 404
    assert owner.get("/tiers/nope/versions/1/edit").status_code == 404
