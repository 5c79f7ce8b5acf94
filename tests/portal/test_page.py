"""The customer usage page (/portal/<token>, SPEC 10; issue 16, acceptance 3) through Flask's test
client: the linked customer's own numbers and nothing of anyone else's, the JSON form, one plain
404 for a link altered, expired, revoked or never made, and the headers that keep the page out of
other sites' frames, caches and Referers."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
from itsdangerous import URLSafeSerializer

from app.db import now_utc
from app.extensions import db
from app.portal import links
from app.portal.summary import exact_usd
from tests.factories import World, assign, chat

PREMIUM_AND_STANDARD = {
    "key": "pro",
    "name": "Pro Monthly",
    "period": "month",
    "replenish_tokens": 50_000,
    "replenish_mode": "reset",
    "limits": {"standard": {"calls": 10, "tokens": None}, "premium": {"calls": 0, "tokens": 0}},
    "max_budget_usd": "5",
}

DEPLOYMENT = {"provider": "openai", "model": "fake-model", "region": "us", "api_key": "sk-upstream"}
PRICEY = {"input_per_mtok": "200", "output_per_mtok": "600"}  # a call costs cents, not dust


def link_for(world: World, customer_id: str, days: int = 30, now=None) -> str:
    """The path of a link made the way the API and the admin make it (at `now`, to test expiry)."""
    link = links.issue(db.session, world.customer(customer_id), world.secret_key, now or now_utc(), days)
    world.commit()
    return f"/portal/{link.token}"


@pytest.fixture
def acme(world: World) -> str:
    """`acme` on a monthly tier with limits and a budget, two calls made; `globex` beside it with its own."""
    tier = world.add_tier(PREMIUM_AND_STANDARD)
    world.give_customer("acme", 20_000, name="Acme Rockets")
    assign(world, "acme", tier)
    world.give_customer("globex", 7_777, name="Globex Corporation")
    world.add_model("gpt-big", [{**DEPLOYMENT, "base_url": world.upstream.base_url}], price=PRICEY)
    for user in ("acme", "acme", "globex"):
        assert chat(world.url, world.key, user, model="gpt-big").status_code == 200
    return link_for(world, "acme")


def visible_text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_page_shows_the_linked_customers_numbers_and_nothing_of_another(app, world: World, acme):
    resp = app.test_client().get(acme)
    assert resp.status_code == 200
    page = resp.data.decode()
    text = visible_text(page)
    customer = world.customer("acme")
    records = world.usage_records("acme")
    assert "Acme Rockets" in text and "acme" in text
    assert f"{customer.token_balance:,}" in text and "tokens left" in text
    assert "Pro Monthly" in text and "version 1" in text
    spent = sum(r.cost_nusd for r in records)
    assert spent > 10**6 and exact_usd(spent) in text and "of a $5.00 budget" in text
    standard_tokens = sum(r.total_tokens for r in records)
    assert f"Standard 2 of 10 20% {standard_tokens:,} · no limit" in text
    assert "Premium 0 · none allowed 0 · none allowed" in text
    assert "Super premium" not in text  # no limit and no use: no line
    assert "balance set to 50,000 tokens" in text
    assert text.count("gpt-big") == len(records) == 2
    for record in records:
        call = f"gpt-big {record.prompt_tokens:,} {record.completion_tokens:,} {exact_usd(record.cost_nusd)}"
        assert call in text
    other = world.customer("globex")
    for trace in ("Globex", "globex", f"{other.token_balance:,}", "Test"):  # "Test": the project's name
        assert trace not in page, trace


def test_no_admin_chrome_and_no_link_into_the_admin(app, world: World, acme):
    page = app.test_client().get(acme).data.decode()
    assert re.findall(r'href="([^"]+)"', page) == ["/static/css/admin.css", "/static/css/portal.css"]
    assert "<nav" not in page and "<form" not in page and "<script" not in page


def test_the_json_form_is_spec_10s_shape_with_the_apis_own_usage(app, world: World, acme):
    from app.keys.operations import create_key

    _, admin_key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    client = app.test_client()
    resp = client.get(acme + "?format=json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"customer_id", "name", "token_balance", "tier", "usage", "calls"}
    customer = world.customer("acme")
    assert body["customer_id"] == "acme" and body["name"] == "Acme Rockets"
    assert body["token_balance"] == customer.token_balance
    assert body["tier"] == {"key": "pro", "version": 1, "name": "Pro Monthly"}
    api_usage = client.get("/api/customers/acme/usage", headers={"Authorization": f"Bearer {admin_key}"})
    assert body["usage"] == api_usage.get_json()
    assert body["usage"]["max_budget_usd"] == "5.000000000"
    assert body["usage"]["model_tiers"]["premium"]["limit_calls"] == 0
    assert body["usage"]["model_tiers"]["standard"]["calls"] == 2
    records = world.usage_records("acme")[::-1]  # newest first
    assert body["calls"] == [
        {
            "at": r.created_at.isoformat().replace("+00:00", "Z"),
            "model": "gpt-big",
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost_usd": f"{r.cost_nusd / 1e9:.9f}",
        }
        for r in records
    ]
    assert all(
        set(call) == {"at", "model", "prompt_tokens", "completion_tokens", "cost_usd"}
        for call in body["calls"]
    )
    assert "globex" not in resp.data.decode().lower()


def test_only_the_last_twenty_calls_are_listed(app, world: World):
    world.give_customer("initech", 100_000)
    for _ in range(21):
        assert chat(world.url, world.key, "initech").status_code == 200
    calls = app.test_client().get(link_for(world, "initech") + "?format=json").get_json()["calls"]
    newest = world.usage_records("initech")[-20:][::-1]
    assert [c["at"] for c in calls] == [r.created_at.isoformat().replace("+00:00", "Z") for r in newest]


def tampered(path: str) -> list[str]:
    """The link with one character of its claims, then of its signature, changed; and the
    signature's last character changed (base64 can spell the same bytes two ways there)."""
    token = path.removeprefix("/portal/")
    claims, signature = token.rsplit(".", 1)
    swap = {"A": "B", "B": "A"}

    def changed(text: str, at: int) -> str:
        return text[:at] + (swap.get(text[at], "A")) + text[at + 1 :]

    return [
        f"{changed(claims, 3)}.{signature}",
        f"{claims}.{changed(signature, 5)}",
        f"{claims}.{signature[:-1]}{chr(ord(signature[-1]) ^ 1)}",
    ]


def test_altered_expired_revoked_and_garbage_links_are_one_plain_404(app, world: World, acme):
    client = app.test_client()
    expired = link_for(world, "acme", days=30, now=now_utc() - timedelta(days=30, seconds=1))
    still_valid = link_for(world, "acme", days=30, now=now_utc() - timedelta(days=29, hours=23))
    assert client.get(still_valid).status_code == 200
    globex_pk = world.customer("globex").id
    forged = URLSafeSerializer("guessed-secret", salt=links.SALT).dumps({"c": globex_pk, "e": 2**40})
    garbage = ["", "x", "a.b", "..", "%00", "é", "a" * 5000, "nested/path", "e30.e30", forged]
    garbage += [
        URLSafeSerializer("k", salt=links.SALT).dumps(claims)
        for claims in (
            {"c": "1", "e": 2**40},
            {"c": True, "e": 2**40},
            {"c": 2**70, "e": 2**40},
            [1, 2],
            None,
        )
    ]
    answers = [client.get(p) for p in [*(f"/portal/{t}" for t in tampered(acme)), expired]]
    answers += [client.get(f"/portal/{g}") for g in garbage]
    revoked_link = link_for(world, "acme")
    links.revoke_all(db.session, world.customer("acme"))
    world.commit()
    answers += [client.get(revoked_link), client.get(acme)]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert len({a.data for a in answers}) == 1  # nothing tells the cases apart
    refusal = answers[0].data.decode()
    assert "Acme" not in refusal and "expired" in refusal
    assert re.findall(r'href="([^"]+)"', refusal) == ["/static/css/admin.css", "/static/css/portal.css"]
    json_answers = {client.get(p + "?format=json").data for p in (revoked_link, expired, f"/portal/{forged}")}
    [only] = json_answers
    assert json.loads(only)["error"]["code"] == "not_found"


def test_a_new_link_works_after_a_revocation(app, world: World, acme):
    links.revoke_all(db.session, world.customer("acme"))
    world.commit()
    fresh = link_for(world, "acme")
    assert app.test_client().get(fresh).status_code == 200
    assert app.test_client().get(acme).status_code == 404


def headers_of(resp) -> dict[str, str]:
    return {name.lower(): value for name, value in resp.headers.items()}


@pytest.mark.parametrize("valid", [True, False])
def test_without_listed_origins_no_site_may_frame_the_page(app, world: World, acme, valid):
    resp = app.test_client().get(acme if valid else "/portal/not-a-link")
    assert resp.status_code == (200 if valid else 404)
    headers = headers_of(resp)
    policy = [d.strip() for d in headers["content-security-policy"].split(";")]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert "script-src 'none'" in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-robots-tag"].startswith("noindex")
    assert "set-cookie" not in headers


def test_listed_origins_may_frame_the_page_and_no_x_frame_options_blocks_them(app, world: World, acme):
    world.set(portal_frame_origins=["https://app.example.com", "https://*.example.org"])
    resp = app.test_client().get(acme)
    headers = headers_of(resp)
    policy = [d.strip() for d in headers["content-security-policy"].split(";")]
    assert "frame-ancestors https://app.example.com https://*.example.org" in policy
    assert "default-src 'self'" in policy
    assert "x-frame-options" not in headers
    assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"
    # A link that does not work says nothing of the project, so no site may frame that answer.
    missing = headers_of(app.test_client().get("/portal/not-a-link"))
    assert (
        "frame-ancestors 'none'" in missing["content-security-policy"]
        and missing["x-frame-options"] == "DENY"
    )


def test_another_projects_origins_do_not_open_this_projects_page(app, world: World, acme):
    from app.projects.operations import create_project

    other = create_project(db.session, "other", "Other")
    other.portal_frame_origins = ["https://other.example.com"]
    world.commit()
    policy = headers_of(app.test_client().get(acme))["content-security-policy"]
    assert "other.example.com" not in policy and "frame-ancestors 'none'" in policy


def test_the_page_reads_no_admin_session(app, world: World, acme):
    """A signed-in admin opening a link gets the customer's page, and no cookie is read or set."""
    from app.cli import add_admin
    from tests.admin.test_sign_in_and_customers import client_for, sign_in

    add_admin("owner@example.com", "correct horse battery")
    db.session.commit()
    client = client_for(app)
    assert sign_in(client).status_code == 302
    resp = client.get(acme)
    assert resp.status_code == 200 and "set-cookie" not in headers_of(resp)
    assert "owner@example.com" not in resp.data.decode() and "Sign out" not in resp.data.decode()
    app.extensions["tollgate.signin_throttle"].__init__(None)


def test_costs_show_to_the_nano_dollar_the_customer_was_charged():
    from decimal import Decimal

    from hypothesis import given
    from hypothesis import strategies as st

    from app.metering.pricing import to_usd

    shown = [exact_usd(n) for n in (0, 7_500, 12_300_000, 1_500_000_000, 1_234_567_891_000, -4_000_000)]
    assert shown == ["$0.00", "$0.0000075", "$0.0123", "$1.50", "$1,234.567891", "-$0.004"]

    @given(st.integers(min_value=-(10**18), max_value=10**18))
    def exact(nusd: int) -> None:
        text = exact_usd(nusd)
        assert Decimal(text.replace("$", "").replace(",", "")) == to_usd(nusd)

    exact()


def test_an_unexpected_failure_shows_the_customers_own_error_page(app, world: World, acme, monkeypatch):
    from app.portal import views

    def broken(*args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(views, "summarize", broken)
    resp = app.test_client().get(acme)
    assert resp.status_code == 500
    page = resp.data.decode()
    assert "Something went wrong" in page and "the database went away" not in page
    assert re.findall(r'href="([^"]+)"', page) == ["/static/css/admin.css", "/static/css/portal.css"]
    assert headers_of(resp)["x-frame-options"] == "DENY" and headers_of(resp)["cache-control"] == "no-store"


def test_a_customer_without_a_tier_and_owing_tokens_reads_plainly(app, world: World):
    world.give_customer("owes", 0, name="Owes Inc", tier_id=None, token_balance=-1_500)
    resp = app.test_client().get(link_for(world, "owes"))
    assert resp.status_code == 200
    text = visible_text(resp.data.decode())
    assert "-1,500 tokens owed" in text and "Plan None" in text and "this plan does not replenish" in text
    assert "Your plan has no call or token limits." in text and "No calls yet." in text
    body = app.test_client().get(link_for(world, "owes") + "?format=json").get_json()
    assert body["tier"] is None and body["usage"]["tier"] is None and body["calls"] == []


def notice_of(app, world: World, customer_id: str) -> str | None:
    page = app.test_client().get(link_for(world, customer_id)).data.decode()
    found = re.search(r'<p class="portal-notice" id="notice" role="status">(.*?)</p>', page, re.S)
    return visible_text(found.group(1)).strip() if found else None


def test_the_page_says_why_calls_are_refused_and_the_json_keeps_its_shape(app, world: World, acme):
    from app.metering.credits import add_or_set

    world.give_customer("paused", 100, name="Paused Co", blocked=True)
    world.give_customer("newbie", 0, name="Newbie")
    world.give_customer("spent", 100, name="Spent Ltd")
    add_or_set(
        db.session.connection(),
        world.customer("spent").id,
        "set",
        0,
        source="test",
        reason="used up",
        now=now_utc(),
    )
    world.commit()
    assert notice_of(app, world, "paused") == "Access is paused: calls are refused. Contact Test."
    assert notice_of(app, world, "newbie") == (
        "Waiting for approval: calls are refused until your access is approved."
    )
    assert notice_of(app, world, "spent").startswith(
        "No tokens left: calls are refused until tokens are added"
    )
    assert notice_of(app, world, "acme") is None
    for customer_id in ("paused", "newbie", "spent", "acme"):
        body = app.test_client().get(link_for(world, customer_id) + "?format=json").get_json()
        assert set(body) == {"customer_id", "name", "token_balance", "tier", "usage", "calls"}


def test_a_postpaid_customer_in_the_approval_queue_is_served_and_told_nothing_is_refused(app, world: World):
    """Only a prepaid plan stops at an empty balance: a postpaid customer never credited is still in
    the queue, but its calls are served, so the page must not say they are refused."""
    from tests.factories import assign, chat

    postpaid = world.add_tier({"key": "postpaid", "name": "Postpaid", "prepaid": False})
    world.give_customer("later", 0)
    assign(world, "later", postpaid)
    assert chat(world.url, world.key, "later").status_code == 200
    assert notice_of(app, world, "later") is None


def test_no_replenishment_reads_none_scheduled_and_an_id_used_as_name_shows_once(app, world: World):
    flat = world.add_tier({"key": "flat", "name": "Flat", "period": "none"})
    world.give_customer("solo", 10)
    assign(world, "solo", flat)
    page = app.test_client().get(link_for(world, "solo")).data.decode()
    text = visible_text(page[page.index("<main") :])  # the body, not the tab's title
    assert "Next replenishment None scheduled" in text and ">None<" not in page
    assert "Account" not in text and re.findall(r"\bsolo\b", text) == ["solo"]
