"""LiteLLM-compatible /customer/*, /end_user/* and /budget/* routes (SPEC 6.1, reference/litellm-api.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from app.keys.operations import create_key
from app.metering.pricing import to_usd
from app.models import Event
from app.models.tier import UsageTier
from app.projects.operations import create_project
from tests.conftest import MASTER_KEY
from tests.factories import World, chat

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


def call(world: World, key: str | None, method: str, path: str, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(
        method, f"{world.url}{path}", headers={**headers, **kw.pop("headers", {})}, timeout=30, **kw
    )


def post(world: World, key: str, path: str, body) -> requests.Response:
    return call(world, key, "POST", path, json=body)


def ok(resp: requests.Response):
    assert resp.status_code == 200, resp.text
    return resp.json()


def error(resp: requests.Response, status: int) -> dict:
    """A LiteLLM-shaped error: code is the HTTP status as a string."""
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["code"] == str(status)
    return body


def tiers(key: str) -> list[UsageTier]:
    db.session.expire_all()
    return list(db.session.scalars(select(UsageTier).where(UsageTier.key == key).order_by(UsageTier.version)))


def test_customer_new_with_max_budget_and_with_budget_id(world: World, admin: str):
    ok(
        post(
            world,
            admin,
            "/budget/new",
            {"budget_id": "free-tier", "max_budget": 4.0, "budget_duration": "30d"},
        )
    )
    own = ok(
        post(
            world,
            admin,
            "/customer/new",
            {
                "user_id": "c1",
                "alias": "Acme",
                "max_budget": 2.5,
                "allowed_model_region": "eu",
                "default_model": "gpt-test",
                "spend": 3.0,
                "object_permission": {"vector_stores": []},  # LiteLLM fields Tollgate has no use for
            },
        )
    )
    assert own == {
        "user_id": "c1",
        "blocked": False,
        "alias": "Acme",
        "spend": 0.0,
        "allowed_model_region": "eu",
        "default_model": "gpt-test",
        "budget_id": None,
        "litellm_budget_table": {
            "budget_id": None,
            "soft_budget": None,
            "max_budget": 2.5,
            "max_parallel_requests": None,
            "tpm_limit": None,
            "rpm_limit": None,
            "model_max_budget": None,
            "budget_duration": None,
            "budget_reset_at": None,
            "created_at": own["litellm_budget_table"]["created_at"],
            "usage_tier": None,
        },
        "name": "c1",
        "token_balance": 100_000,
        "usage_tier": {"key": "default", "version": 1},
        "max_budget_usd": "2.500000000",
        "budget_set_at": own["budget_set_at"],
    }
    c1 = world.customer("c1")
    assert own["budget_set_at"] == c1.budget_set_at.isoformat().replace("+00:00", "Z")
    assert c1.max_budget_nusd == 2_500_000_000 and c1.allowed_regions == ["eu"]
    assert c1.metadata_ == {"default_model": "gpt-test"}
    # The customer's budget lives on the customer: no shared tier was touched.
    assert [t.max_budget_nusd for t in tiers("default")] == [None]
    assert [t.max_budget_nusd for t in tiers("free-tier")] == [4_000_000_000]

    linked = ok(post(world, admin, "/customer/new", {"user_id": "c2", "budget_id": "free-tier"}))
    table = linked["litellm_budget_table"]
    assert linked["budget_id"] == "free-tier" and linked["usage_tier"] == {"key": "free-tier", "version": 1}
    assert linked["max_budget_usd"] is None and world.customer("c2").max_budget_nusd is None
    assert (table["budget_id"], table["max_budget"], table["budget_duration"]) == ("free-tier", 4.0, "30d")
    assert table["budget_reset_at"].endswith("Z")
    assert table["budget_reset_at"] == world.customer("c2").period_end.isoformat().replace("+00:00", "Z")

    both = error(
        post(world, admin, "/customer/new", {"user_id": "c3", "max_budget": 1, "budget_id": "free-tier"}), 400
    )
    assert both["message"] == "Set either 'max_budget' or 'budget_id', not both."
    assert both["type"] == "bad_request" and world.customer("c3") is None

    # Either-or is checked first, whatever else is wrong with the body.
    assert error(
        post(world, admin, "/customer/new", {"user_id": "c3", "max_budget": 1, "budget_id": "gold"}), 400
    )
    duplicate = error(post(world, admin, "/customer/new", {"user_id": "c1"}), 400)
    assert duplicate == {
        "message": "Customer already exists, passed user_id=c1. Please pass a new user_id.",
        "type": "bad_request",
        "param": "user_id",
        "code": "400",
    }
    model = error(post(world, admin, "/customer/new", {"user_id": "c4", "default_model": "gpt-9"}), 422)
    assert model["type"] == "unprocessable_entity" and model["param"] == "default_model"
    assert "gpt-9" in model["message"] and "gpt-test" in model["message"]
    missing = error(post(world, admin, "/customer/new", {"user_id": "c4", "budget_id": "gold"}), 404)
    assert missing["type"] == "not_found" and missing["param"] == "budget_id"
    # Limits only a budget can carry are refused on a customer, never silently dropped.
    assert (
        error(post(world, admin, "/customer/new", {"user_id": "c4", "rpm_limit": 5}), 400)["param"]
        == "rpm_limit"
    )
    negative = error(post(world, admin, "/customer/new", {"user_id": "c4", "max_budget": -1}), 400)
    assert negative["message"] == "max_budget must be a non-negative finite number. Received: -1.0"
    assert world.customer("c4") is None


def test_budget_new_maps_onto_a_tier_and_its_limits_reach_the_proxy(world: World, admin: str):
    row = ok(
        post(
            world,
            admin,
            "/budget/new",
            {
                "budget_id": "pro",
                "max_budget": 10,
                "soft_budget": 8.5,
                "rpm_limit": 2,
                "tpm_limit": 10_000,
                "max_parallel_requests": 3,
                "budget_duration": "1mo",
                "model_max_budget": {"gpt-test": {"max_budget": 1.5, "budget_duration": "1mo"}},
                "budget_reset_at": None,
            },
        )
    )
    assert {k: v for k, v in row.items() if k != "created_at"} == {
        "budget_id": "pro",
        "soft_budget": 8.5,
        "max_budget": 10.0,
        "max_parallel_requests": 3,
        "tpm_limit": 10_000,
        "rpm_limit": 2,
        "model_max_budget": {
            "gpt-test": {"max_budget": 1.5, "budget_duration": "1mo", "tpm_limit": None, "rpm_limit": None}
        },
        "budget_duration": "1mo",
        "budget_reset_at": row["budget_reset_at"],
        "usage_tier": {"key": "pro", "version": 1},
    }
    assert row["created_at"].endswith("Z")
    # A budget with a duration says when it resets: a month after it was made (SPEC 6.1).
    made, resets = (
        datetime.fromisoformat(row[k].replace("Z", "+00:00")) for k in ("created_at", "budget_reset_at")
    )
    assert (resets.year * 12 + resets.month) - (made.year * 12 + made.month) == 1
    assert (resets.day, resets.time()) == (made.day, made.time()) or made.day > 28
    [tier] = tiers("pro")
    assert (tier.prepaid, tier.period, tier.anchor) == (False, "1mo", "assignment")
    assert (tier.rpm_limit, tier.tpm_limit, tier.max_parallel_requests) == (2, 10_000, 3)
    assert (tier.max_budget_nusd, tier.soft_budget_nusd) == (10_000_000_000, 8_500_000_000)
    assert tier.model_budgets_nusd == {"gpt-test": 1_500_000_000}

    ok(post(world, admin, "/customer/new", {"user_id": "p1", "budget_id": "pro"}))
    world.commit()  # the proxy reloads its snapshot now rather than within the second
    served = chat(world.url, world.key, "p1")
    assert served.status_code == 200 and served.headers["x-ratelimit-limit-requests"] == "2"

    generated = ok(post(world, admin, "/budget/new", {"rpm_limit": 7}))
    assert len(generated["budget_id"]) == 36 and generated["budget_duration"] is None
    duplicate = error(post(world, admin, "/budget/new", {"budget_id": "pro"}), 400)
    assert duplicate["message"] == "Budget with id 'pro' already exists."
    nan_body = b'{"budget_id": "x", "max_budget": NaN}'  # Python's JSON (LiteLLM's too) reads NaN
    nan = error(call(world, admin, "POST", "/budget/new", data=nan_body, headers=JSON), 400)
    assert nan["message"] == "max_budget must be a non-negative finite number. Received: nan"
    soft = error(post(world, admin, "/budget/new", {"budget_id": "x", "soft_budget": -2}), 400)
    assert soft["message"] == "soft_budget must be a non-negative finite number. Received: -2.0"
    assert error(post(world, admin, "/budget/new", {"budget_id": "x", "budget_duration": "30x"}), 400)[
        "param"
    ] == ("budget_duration")
    assert (
        error(post(world, admin, "/budget/new", {"budget_id": "x", "rpm_limit": 0}), 400)["param"]
        == "rpm_limit"
    )
    assert error(post(world, admin, "/budget/new", {"budget_id": "x", "rpm_limit": "many"}), 422)[
        "param"
    ] == ("rpm_limit")
    assert tiers("x") == []

    info = ok(post(world, admin, "/budget/info", {"budgets": ["pro", "nope"]}))
    assert [r["budget_id"] for r in info] == ["pro"]
    empty = error(post(world, admin, "/budget/info", {"budgets": []}), 400)
    assert empty["message"] == "Specify list of budget id's to query. Passed in=[]"
    listed = ok(call(world, admin, "GET", "/budget/list"))
    assert [r["budget_id"] for r in listed] == ["default", "pro", generated["budget_id"]]


def test_customer_info_shows_litellm_fields_and_period_spend(world: World, admin: str):
    ok(post(world, admin, "/budget/new", {"budget_id": "monthly", "max_budget": 5, "budget_duration": "30d"}))
    made = ok(post(world, admin, "/customer/new", {"user_id": "m1", "budget_id": "monthly"}))
    ok(post(world, admin, "/customer/new", {"user_id": "l1"}))
    world.commit()
    assert chat(world.url, world.key, "m1").status_code == 200
    assert chat(world.url, world.key, "l1").status_code == 200
    [m1_usage] = world.usage_records("m1")
    [l1_usage] = world.usage_records("l1")
    assert m1_usage.cost_nusd > 0

    info = ok(call(world, admin, "GET", "/customer/info", params={"end_user_id": "m1"}))
    assert info["spend"] == float(to_usd(m1_usage.cost_nusd))
    assert info["token_balance"] < made["token_balance"]
    assert info["litellm_budget_table"]["max_budget"] == 5.0
    # A tier without a period: lifetime spend.
    lifetime = ok(call(world, admin, "GET", "/customer/info", params={"end_user_id": "l1"}))
    assert lifetime["spend"] == float(to_usd(l1_usage.cost_nusd))
    assert lifetime["budget_id"] is None and lifetime["litellm_budget_table"] is None

    # With a budget period, spend is the current period's: usage before it does not count.
    m1 = world.customer("m1")
    m1.period_start = m1_usage.created_at + timedelta(seconds=1)
    world.commit()
    after = ok(call(world, admin, "GET", "/customer/info", params={"end_user_id": "m1"}))
    assert after["spend"] == 0.0 and world.customer("m1").spend_nusd == m1_usage.cost_nusd

    unknown = error(call(world, admin, "GET", "/customer/info", params={"end_user_id": "nobody"}), 404)
    assert unknown == {
        "message": "End User Id=nobody does not exist in db",
        "type": "not_found",
        "param": "end_user_id",
        "code": "404",
    }
    assert error(call(world, admin, "GET", "/customer/info"), 422)["param"] == "end_user_id"


def test_update_honours_false_and_zero(world: World, admin: str):
    ok(post(world, admin, "/customer/new", {"user_id": "u1", "alias": "A", "blocked": True, "max_budget": 5}))
    assert world.customer("u1").blocked is True
    updated = ok(post(world, admin, "/customer/update", {"user_id": "u1", "blocked": False, "max_budget": 0}))
    assert updated["blocked"] is False and updated["alias"] == "A"  # null or absent: unchanged
    assert updated["max_budget_usd"] == "0.000000000" and updated["litellm_budget_table"]["max_budget"] == 0.0
    u1 = world.customer("u1")
    assert u1.blocked is False and u1.max_budget_nusd == 0

    again = ok(
        post(
            world,
            admin,
            "/customer/update",
            {"user_id": "u1", "alias": None, "allowed_model_region": "us", "default_model": "gpt-test"},
        )
    )
    assert (again["alias"], again["allowed_model_region"], again["default_model"]) == ("A", "us", "gpt-test")

    ok(post(world, admin, "/budget/new", {"budget_id": "team", "max_budget": 3}))
    moved = ok(post(world, admin, "/end_user/update", {"user_id": "u1", "budget_id": "team"}))
    # budget_id and max_budget are either-or: linking a budget replaces the customer's own.
    assert moved["budget_id"] == "team" and moved["max_budget_usd"] is None
    assert moved["litellm_budget_table"]["max_budget"] == 3.0
    assert world.customer("u1").max_budget_nusd is None

    missing = error(post(world, admin, "/customer/update", {"user_id": "ghost", "blocked": True}), 404)
    assert missing["message"] == "End User Id=ghost does not exist in db" and missing["param"] == "user_id"
    both = error(
        post(world, admin, "/customer/update", {"user_id": "u1", "max_budget": 1, "budget_id": "team"}), 400
    )
    assert both["message"] == "Set either 'max_budget' or 'budget_id', not both."
    kinds = [e.type for e in db.session.scalars(select(Event).where(Event.customer_external_id == "u1"))]
    assert kinds[:2] == ["customer.created", "customer.unblocked"]


def test_block_then_unblock_really_unblocks(world: World, admin: str):
    ok(post(world, admin, "/customer/new", {"user_id": "b1"}))
    assert chat(world.url, world.key, "b1").status_code == 200
    blocked = ok(post(world, admin, "/customer/block", {"user_ids": ["b1", "fresh"]}))["blocked_users"]
    assert [(c["user_id"], c["blocked"]) for c in blocked] == [("b1", True), ("fresh", True)]
    assert world.customer("fresh").blocked is True  # unknown ids are created blocked
    assert chat(world.url, world.key, "b1").status_code == 403
    assert chat(world.url, world.key, "fresh").status_code == 403

    assert ok(post(world, admin, "/customer/unblock", {"user_ids": ["b1"]})) == {"blocked_users": []}
    assert world.customer("b1").blocked is False
    assert chat(world.url, world.key, "b1").status_code == 200
    assert ok(post(world, admin, "/end_user/unblock", {"user_ids": ["fresh", "never-seen"]})) == {
        "blocked_users": []
    }
    assert chat(world.url, world.key, "fresh").status_code == 200
    assert world.customer("never-seen") is None
    kinds = [e.type for e in db.session.scalars(select(Event).where(Event.customer_external_id == "b1"))]
    assert kinds == ["customer.created", "customer.blocked", "customer.unblocked"]


def test_budget_update_of_a_used_budget_clones_it_and_moves_its_customers(world: World, admin: str):
    ok(post(world, admin, "/budget/new", {"budget_id": "pro", "max_budget": 4, "budget_duration": "30d"}))
    for user_id in ("a", "b"):
        ok(post(world, admin, "/customer/new", {"user_id": user_id, "budget_id": "pro"}))
    row = ok(post(world, admin, "/budget/update", {"budget_id": "pro", "max_budget": 10, "rpm_limit": 5}))
    assert (row["max_budget"], row["rpm_limit"], row["budget_duration"]) == (10.0, 5, "30d")
    assert row["usage_tier"] == {"key": "pro", "version": 2}

    v1, v2 = tiers("pro")
    assert (v1.version, v1.locked, v1.max_budget_nusd, v1.rpm_limit) == (1, True, 4_000_000_000, None)
    assert (v2.version, v2.max_budget_nusd, v2.rpm_limit, v2.prepaid) == (2, 10_000_000_000, 5, False)
    assert world.customer("a").tier_id == v2.id and world.customer("b").tier_id == v2.id
    info = ok(call(world, admin, "GET", "/customer/info", params={"end_user_id": "a"}))
    assert (
        info["usage_tier"] == {"key": "pro", "version": 2}
        and info["litellm_budget_table"]["max_budget"] == 10.0
    )
    moves = [e.data for e in db.session.scalars(select(Event).where(Event.type == "customer.tier_changed"))]
    assert [m["to"] for m in moves][-2:] == [{"key": "pro", "version": 2}] * 2

    # The same values again change nothing: no version 3.
    ok(post(world, admin, "/budget/update", {"budget_id": "pro", "max_budget": 10}))
    assert len(tiers("pro")) == 2
    # null clears a field (LiteLLM's exclude_unset): on the locked v2 that makes v3.
    cleared = ok(post(world, admin, "/budget/update", {"budget_id": "pro", "rpm_limit": None}))
    assert cleared["rpm_limit"] is None and cleared["usage_tier"]["version"] == 3

    # A budget no customer has used is edited in place.
    ok(post(world, admin, "/budget/new", {"budget_id": "spare", "max_budget": 1}))
    edited = ok(post(world, admin, "/budget/update", {"budget_id": "spare", "budget_duration": "7d"}))
    assert edited["budget_duration"] == "7d" and edited["usage_tier"]["version"] == 1
    assert [(t.version, t.period, t.anchor) for t in tiers("spare")] == [(1, "7d", "assignment")]

    # The project's default tier is a budget too: updating it moves the default to the new version.
    ok(post(world, admin, "/customer/new", {"user_id": "old-default"}))
    ok(post(world, admin, "/budget/update", {"budget_id": "default", "soft_budget": 1}))
    newcomer = ok(post(world, admin, "/customer/new", {"user_id": "new-default"}))
    assert newcomer["usage_tier"] == {"key": "default", "version": 2} and newcomer["budget_id"] is None
    assert world.customer("old-default").tier_id == tiers("default")[1].id

    required = error(post(world, admin, "/budget/update", {"max_budget": 1}), 400)
    assert required["message"] == "budget_id is required"
    assert error(post(world, admin, "/budget/update", {"budget_id": "gold", "max_budget": 1}), 404)[
        "type"
    ] == ("not_found")


def test_customer_delete_is_all_or_nothing(world: World, admin: str):
    for user_id in ("d1", "d2"):
        ok(post(world, admin, "/customer/new", {"user_id": user_id}))
    missing = error(post(world, admin, "/customer/delete", {"user_ids": ["d1", "ghost"]}), 404)
    assert missing == {
        "message": "End User Id(s)=ghost do not exist in db",
        "type": "not_found",
        "param": "user_ids",
        "code": "404",
    }
    assert world.customer("d1") is not None
    deleted = ok(post(world, admin, "/customer/delete", {"user_ids": ["d1", "d2"]}))
    assert deleted == {
        "deleted_customers": 2,
        "message": "Successfully deleted customers with ids: ['d1', 'd2']",
    }
    assert world.customer("d1") is None and world.customer("d2") is None


def test_end_user_aliases(world: World, admin: str):
    ok(post(world, admin, "/end_user/new", {"user_id": "e1", "alias": "E"}))
    assert ok(call(world, admin, "GET", "/end_user/info", params={"end_user_id": "e1"}))["alias"] == "E"
    assert ok(post(world, admin, "/end_user/update", {"user_id": "e1", "alias": "F"}))["alias"] == "F"
    assert (
        ok(post(world, admin, "/end_user/block", {"user_ids": ["e1"]}))["blocked_users"][0]["blocked"] is True
    )
    assert ok(post(world, admin, "/end_user/unblock", {"user_ids": ["e1"]})) == {"blocked_users": []}
    assert [c["user_id"] for c in ok(call(world, admin, "GET", "/end_user/list"))] == ["e1"]
    assert [c["user_id"] for c in ok(call(world, admin, "GET", "/customer/list"))] == ["e1"]
    assert ok(post(world, admin, "/end_user/delete", {"user_ids": ["e1"]}))["deleted_customers"] == 1
    assert error(call(world, admin, "GET", "/end_user/info", params={"end_user_id": "e1"}), 404)


def test_budget_delete(world: World, admin: str):
    ok(post(world, admin, "/budget/new", {"budget_id": "unused", "max_budget": 2}))
    ok(post(world, admin, "/budget/new", {"budget_id": "used"}))
    ok(post(world, admin, "/customer/new", {"user_id": "x1", "budget_id": "used"}))
    deleted = ok(post(world, admin, "/budget/delete", {"id": "unused"}))
    assert deleted["budget_id"] == "unused" and deleted["max_budget"] == 2.0 and tiers("unused") == []
    assert error(post(world, admin, "/budget/delete", {"id": "used"}), 400)["param"] == "id"
    assert error(post(world, admin, "/budget/delete", {"id": "default"}), 400)
    assert error(post(world, admin, "/budget/delete", {"id": "unused"}), 404)
    assert len(tiers("used")) == 1 and world.customer("x1") is not None


def test_errors_answer_the_litellm_way(world: World, admin: str):
    unauthenticated = error(call(world, None, "GET", "/customer/list"), 401)
    assert unauthenticated["type"] == "auth_error"
    proxy_key = error(post(world, world.key, "/customer/new", {"user_id": "z1"}), 403)
    assert proxy_key["type"] == "forbidden" and world.customer("z1") is None
    assert error(call(world, world.key, "GET", "/budget/list"), 403)["type"] == "forbidden"

    malformed = call(world, admin, "POST", "/customer/new", data=b"{nope", headers=JSON)
    assert error(malformed, 400)["type"] == "bad_request"
    no_id = error(post(world, admin, "/customer/new", {"alias": "x"}), 422)
    assert no_id["type"] == "unprocessable_entity" and no_id["param"] == "user_id"
    assert (
        error(post(world, admin, "/customer/new", {"user_id": "z1", "blocked": "maybe"}), 422)["param"]
        == "blocked"
    )
    assert error(post(world, admin, "/customer/new", {"user_id": "z1", "allowed_model_region": "mars"}), 422)[
        "param"
    ] == ("allowed_model_region")
    assert error(post(world, admin, "/customer/block", {"user_ids": "z1"}), 422)["param"] == "user_ids"
    assert world.customer("z1") is None


def test_master_key_and_projects_are_kept_apart(world: World, admin: str):
    other = create_project(db.session, "other", "Other")
    _, other_key = create_key(db.session, other, "ops", "admin")
    world.commit()
    ok(post(world, admin, "/customer/new", {"user_id": "mine"}))
    assert ok(call(world, other_key, "GET", "/customer/list")) == []
    assert error(call(world, other_key, "GET", "/customer/info", params={"end_user_id": "mine"}), 404)
    assert error(post(world, other_key, "/customer/delete", {"user_ids": ["mine"]}), 404)
    by_master = ok(call(world, MASTER_KEY, "GET", "/customer/list"))
    assert [c["user_id"] for c in by_master] == ["mine"]
    other_side = call(world, MASTER_KEY, "GET", "/customer/list", headers={"X-Tollgate-Project": "other"})
    assert ok(other_side) == []


def test_writes_accept_an_idempotency_key(world: World, admin: str):
    key = {"Idempotency-Key": "new-i1"}
    first = call(world, admin, "POST", "/customer/new", json={"user_id": "i1"}, headers=key)
    replay = call(world, admin, "POST", "/customer/new", json={"user_id": "i1"}, headers=key)
    assert ok(replay) == ok(first) and replay.headers["Idempotent-Replayed"] == "true"
    other = error(call(world, admin, "POST", "/customer/new", json={"user_id": "i2"}, headers=key), 409)
    assert other["type"] == "conflict" and world.customer("i2") is None
    assert len(world.ledger("i1")) == 1


def test_spend_grows_by_each_calls_cost_and_max_budget_stops_calls(world: World, admin: str):
    """LiteLLM's customer-budget flow, unchanged: max_budget on /customer/new, calls with `user`."""
    world.add_model(
        "gpt-priced",
        [{"provider": "openai", "base_url": world.upstream.base_url, "model": "m"}],
        price={"input_per_mtok": "1000", "output_per_mtok": "1000"},
    )  # $0.001 a token
    ok(post(world, admin, "/customer/new", {"user_id": "lite", "max_budget": 0.05}))
    spends = [ok(call(world, admin, "GET", "/customer/info", params={"end_user_id": "lite"}))["spend"]]
    costs = []
    while True:
        reply = chat(world.url, world.key, "lite", model="gpt-priced")
        if reply.status_code != 200:
            break
        costs.append(reply.json()["usage"]["total_tokens"] / 1000)
        spends.append(
            ok(call(world, admin, "GET", "/customer/info", params={"end_user_id": "lite"}))["spend"]
        )
    assert costs, "no call was served"
    for before, after, cost in zip(spends[:-1], spends[1:], costs, strict=True):
        assert after - before == pytest.approx(cost, abs=1e-9)
    refused = reply.json()["error"]
    assert (
        reply.status_code == 429
        and refused["type"] == "budget_exceeded"
        and refused["code"] == "budget_exceeded"
    )
    assert refused["message"].startswith("ExceededBudget: End User=lite over budget.")
    assert spends[-1] <= 0.05
