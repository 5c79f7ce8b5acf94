"""A customer's usage, ledger and requests; the events feed; webhook subscriptions."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.keys.operations import create_key
from tests.api.test_customers import api, error
from tests.factories import World, assign, chat


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


def test_usage_reports_period_use_against_limits(world: World, admin: str):
    tier = world.add_tier(
        {
            "key": "lim",
            "period": "month",
            "replenish_tokens": 5000,
            "limits": {"standard": {"calls": 3, "tokens": None}},
            "on_limit": "allow",
        }
    )
    world.give_customer("u1", 10_000)
    assign(world, "u1", tier)
    replies = [chat(world.url, world.key, "u1").json() for _ in range(4)]
    usage = api(world, admin, "GET", "/customers/u1/usage").json()
    standard = usage["model_tiers"]["standard"]
    assert (standard["calls"], standard["limit_calls"], standard["overage_calls"]) == (4, 3, 1)
    assert standard["tokens"] == sum(r["usage"]["total_tokens"] for r in replies)
    assert standard["overage_tokens"] == replies[-1]["usage"]["total_tokens"]
    assert usage["model_tiers"]["premium"] == {
        "calls": 0,
        "tokens": 0,
        "limit_calls": None,
        "limit_tokens": None,
        "overage_calls": 0,
        "overage_tokens": 0,
    }
    assert usage["tier"] == {"key": "lim", "version": 1}
    assert usage["next_replenishment_at"] == usage["period"]["end"] and usage["period"]["end"].endswith("Z")
    assert usage["token_balance"] == world.customer("u1").token_balance
    assert usage["spend_usd"] != "0.000000000"


def test_ledger_and_requests_newest_first_with_cursors(world: World, admin: str):
    api(world, admin, "POST", "/customers", json={"customer_id": "l1", "token_balance": 1000})
    for amount in (10, 20, 30):
        api(world, admin, "POST", "/customers/l1/tokens", json={"amount": amount})
    first = api(world, admin, "GET", "/customers/l1/ledger", params={"limit": 2}).json()
    assert [e["amount"] for e in first["data"]] == [30, 20]
    rest = api(
        world, admin, "GET", "/customers/l1/ledger", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert [e["kind"] for e in rest.json()["data"]] == ["adjustment", "initial_grant"]
    assert rest.json()["next_cursor"] is None
    for _ in range(3):
        chat(world.url, world.key, "l1")
    calls = api(world, admin, "GET", "/customers/l1/requests", params={"limit": 5}).json()["data"]
    assert len(calls) == 3 and calls[0]["id"] > "" and calls[0]["status"] == 200
    assert calls[0]["created_at"] >= calls[-1]["created_at"]


def test_events_feed_newest_first_and_filtered(world: World, admin: str):
    for cid in ("e1", "e2"):
        api(world, admin, "POST", "/customers", json={"customer_id": cid})
    api(world, admin, "PATCH", "/customers/e1", json={"blocked": True})
    feed = api(world, admin, "GET", "/events").json()["data"]
    assert [e["type"] for e in feed] == ["customer.blocked", "customer.created", "customer.created"]
    assert (
        feed[0]["id"].startswith("evt_")
        and feed[0]["project"] == "default"
        and feed[0]["customer_id"] == "e1"
    )
    created = api(world, admin, "GET", "/events", params={"type": "customer.created", "limit": 1}).json()
    assert [e["customer_id"] for e in created["data"]] == ["e2"] and created["next_cursor"]
    bad = api(world, admin, "GET", "/events", params={"type": "nope"})
    assert bad.status_code == 400 and error(bad)["param"] == "type"


def test_hooks_subscribe_and_unsubscribe(world: World, admin: str):
    made = api(
        world,
        admin,
        "POST",
        "/hooks",
        json={"target_url": "https://hooks.example.com/x", "event": "tokens.low"},
    )
    assert made.status_code == 201 and made.json()["id"].startswith("hook_")
    assert made.json()["secret"].startswith("whsec_")
    assert api(world, admin, "DELETE", f"/hooks/{made.json()['id']}").status_code == 204
    assert api(world, admin, "DELETE", f"/hooks/{made.json()['id']}").status_code == 404
    bad = api(world, admin, "POST", "/hooks", json={"target_url": "ftp://x", "event": "tokens.low"})
    assert bad.status_code == 400 and error(bad)["param"] == "target_url"


def test_usage_analytics_grouped_and_as_csv(world: World, admin: str):
    for user in ("a", "a", "b"):
        chat(world.url, world.key, user)
    by_customer = api(world, admin, "GET", "/usage", params={"group_by": "customer"}).json()
    rows = {r["group"]: r for r in by_customer["data"]}
    assert (rows["a"]["calls"], rows["b"]["calls"]) == (2, 1)
    assert rows["a"]["total_tokens"] == 2 * rows["b"]["total_tokens"]
    by_day = api(world, admin, "GET", "/usage", params={"group_by": "day"}).json()["data"]
    assert len(by_day) == 1 and by_day[0]["calls"] == 3 and len(by_day[0]["group"]) == 10
    later = api(world, admin, "GET", "/usage", params={"group_by": "model", "from": "2099-01-01T00:00:00Z"})
    assert later.json()["data"] == []
    csv_text = api(world, admin, "GET", "/usage", params={"group_by": "model_tier", "format": "csv"})
    assert csv_text.headers["Content-Type"].startswith("text/csv")
    assert (
        csv_text.text.splitlines()[0]
        == "group,calls,prompt_tokens,completion_tokens,total_tokens,spend_usd,tokens_unbilled"
    )
    assert csv_text.text.splitlines()[1].startswith("standard,3,")
    for bad in (
        {"group_by": "week"},
        {"from": "yesterday"},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    ):
        assert api(world, admin, "GET", "/usage", params=bad).status_code == 400
