"""Form errors on every admin form (issue 16, build 4): each error next to its field, a summary at
the top of the invalid form linking to each field, and domain refusals in the labels' words."""

from __future__ import annotations

import pytest
from flask import Flask
from wtforms import Form, FormField, IntegerField, StringField

from app.errors import Invalid
from app.form_errors import in_label_words, problems, show_refusal
from tests.admin.test_sign_in_and_customers import client_for, csrf, form_post
from tests.admin.test_tier_forms import error_next_to, summary
from tests.factories import World

# (form page, where it posts, what is sent, the field refused, what the summary says about it)
FORMS = [
    (
        "/admins",
        "/admins",
        {"email": "x@example.com", "password": "short", "role": "owner"},
        "password",
        "At least 8",
    ),
    ("/customers", "/customers", {"customer_id": "", "tier": "1"}, "customer_id", ""),
    ("/customers/acme?tab=usage", "/customers/acme/tokens", {"mode": "add", "amount": ""}, "amount", ""),
    ("/customers/acme", "/customers/acme/details", {"name": "", "shedding_tier": "middle"}, "name", "name"),
    (
        "/settings",
        "/settings",
        {"new_customer_initial_tokens": "-1", "default_shedding_tier": "middle", "shedding_level": "off"},
        "new_customer_initial_tokens",
        "0 or more",
    ),
    ("/keys", "/keys", {"name": "", "scope": "proxy"}, "name", "Give the key a name."),
    ("/projects", "/projects", {"slug": "Has Spaces", "name": "x"}, "slug", "Slug must be lower-case"),
    ("/models", "/models", {"name": "", "model_tier": "standard"}, "name", "Model name is required"),
    (
        "/integrations",
        "/integrations/hooks",
        {"target_url": "ftp://x", "events": "tokens.low"},
        "target_url",
        "http",
    ),
    (
        "/integrations",
        "/integrations/litellm",
        {"litellm_webhook_url": "ftp://nowhere"},
        "litellm_webhook_url",
        "LiteLLM webhook URL: ",
    ),
    (
        "/auth/password",
        "/auth/password",
        {"current": "wrong", "new": "long enough 123", "confirm": "long enough 123"},
        "current",
        "current password",
    ),
]


@pytest.mark.parametrize(("page", "path", "data", "field_id", "said"), FORMS, ids=[f[1] for f in FORMS])
def test_every_admin_form_summarises_its_errors_at_the_top(
    owner, world: World, page, path, data, field_id, said
):
    resp = form_post(owner, path, data, page)
    html = resp.data.decode()
    assert resp.status_code == 400, html[-2000:]
    heading, items = summary(html)
    assert heading == "Fix 1 problem below" and list(items) == [field_id], items
    assert said in items[field_id] and error_next_to(html, field_id), items
    assert "_" not in items[field_id].replace(field_id, ""), items  # no code names of fields


def test_the_sign_in_form_has_its_summary_too(app, world: World):
    from app.cli import add_admin
    from app.extensions import db

    add_admin("someone@example.com", "right password 1")
    db.session.commit()
    client = client_for(app)
    page = client.get("/auth/sign-in")
    resp = client.post(
        "/auth/sign-in",
        data={"email": "someone@example.com", "password": "wrong", "csrf_token": csrf(page.data)},
    )
    heading, items = summary(resp.data.decode())
    assert heading == "Fix 1 problem below"
    assert items == {"password": "That email and password do not match an admin."}
    app.extensions["tollgate.signin_throttle"].__init__(None)


class Row(Form):
    calls = IntegerField("Calls")


class Plan(Form):
    replenish_tokens = StringField("Tokens per replenishment")
    max_budget_usd = StringField("Budget per period (USD)")
    litellm_webhook_url = StringField("LiteLLM webhook URL")
    period = StringField("Period")
    premium = FormField(Row, label="premium")


@pytest.fixture
def plan(app: Flask):
    with app.test_request_context():
        yield Plan()


@pytest.mark.parametrize(
    ("domain", "said"),
    [
        ("replenish_tokens must be a whole number", "Tokens per replenishment must be a whole number"),
        ("period: unknown unit", "Period: unknown unit"),
        (
            "soft cap above max_budget_usd",
            "Soft cap above budget per period (USD)",
        ),  # lower case mid-sentence
        ("needs litellm_webhook_url", "Needs LiteLLM webhook URL"),  # an acronym stays as written
        ("unknown_field is not ours", "Unknown_field is not ours"),  # not a field of the form: unchanged
        ("periods differ", "Periods differ"),  # a word that only starts like a field name
    ],
)
def test_domain_messages_are_said_in_the_labels_words(plan, domain, said):
    assert in_label_words(plan, domain) == said


def test_a_refusal_goes_next_to_its_field_or_else_to_the_top(plan):
    show_refusal(plan, Invalid("max_budget_usd: not a money amount", "max_budget_usd"))
    show_refusal(plan, Invalid("limits must map model tiers", "premium"))  # a row of fields: the top
    show_refusal(plan, Invalid("something about the plan"), fallback="period")
    assert plan.max_budget_usd.errors == ["Budget per period (USD): not a money amount"]
    assert plan.period.errors == ["Something about the plan"]
    assert plan.form_errors == ["Limits must map model tiers"]
    found = problems(plan)
    assert [(p.target, p.text) for p in found] == [
        (None, "Limits must map model tiers"),
        ("max_budget_usd", "Budget per period (USD): not a money amount"),
        ("period", "Period: Something about the plan"),
    ]
