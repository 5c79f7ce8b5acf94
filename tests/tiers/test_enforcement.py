"""Tier limits, on_limit, budgets and rate limits through a live gateway (issue 4, acceptance 1, 2, 5, 6)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import openai
import pytest
import requests
from sqlalchemy import select

from app.catalog.operations import set_tier_default
from app.customers.operations import migrate_customers
from app.db import iso, now_utc
from app.extensions import db
from app.keys.operations import create_key
from app.models import Event, PeriodCounter
from app.tiers.operations import clone_tier, edit_tier
from tests.factories import World, assign

MESSAGES = [{"role": "user", "content": "tell me about premium things"}]


@pytest.fixture
def shop(world: World) -> World:
    """gpt-test is the standard default; gpt-premium is premium; both on the fake upstream."""
    world.add_model(
        "gpt-premium",
        [{"provider": "openai", "base_url": world.upstream.base_url, "model": "big"}],
        model_tier="premium",
        price={"input_per_mtok": "1000", "output_per_mtok": "1000"},
    )
    set_tier_default(db.session, world.project, "standard", "gpt-test")
    world.commit()
    return world


def customer_on(world: World, customer_id: str, spec: dict, tokens: int = 1_000_000):
    tier = world.add_tier(spec)
    world.give_customer(customer_id, tokens)
    assign(world, customer_id, tier)
    return tier


def call(world: World, user: str, model: str = "gpt-premium", **extra) -> requests.Response:
    return requests.post(
        world.url + "/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": model, "user": user, "max_tokens": 5, "messages": MESSAGES, **extra},
    )


def counter(customer_pk: int, scope: str) -> PeriodCounter:
    db.session.expire_all()
    return db.session.scalar(
        select(PeriodCounter).where(PeriodCounter.customer_id == customer_pk, PeriodCounter.scope == scope)
    )


def events(kind: str) -> list[Event]:
    db.session.expire_all()
    return list(db.session.scalars(select(Event).where(Event.type == kind)))


def test_block_raises_usage_limit_reached_in_the_sdk(shop: World):
    customer_on(shop, "b1", {"key": "blk", "limits": {"premium": {"calls": 2, "tokens": None}}})
    client = openai.OpenAI(base_url=shop.url + "/v1", api_key=shop.key, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="gpt-premium", messages=MESSAGES, user="b1", max_tokens=3)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-premium", messages=MESSAGES, user="b1", max_tokens=3)
    assert refused.value.body["code"] == "usage_limit_reached"
    # Standard models are not limited by the premium limit.
    client.chat.completions.create(model="gpt-test", messages=MESSAGES, user="b1", max_tokens=3)
    assert len(events("usage.limit_reached")) == 1
    assert len(shop.upstream.requests) == 3
    assert shop.customer("b1").reserved_tokens == 0


def sdk(world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.url + "/v1", api_key=world.key, max_retries=0)


def sdk_call(world: World, user: str, model: str = "gpt-premium"):
    return sdk(world).chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, user=user, max_tokens=5
    )


def test_allow_serves_and_counts_overage(shop: World):
    customer_on(
        shop, "a1", {"key": "alw", "limits": {"premium": {"calls": 1, "tokens": None}}, "on_limit": "allow"}
    )
    first = sdk_call(shop, "a1")
    assert "x-tollgate-overage" not in first.headers
    extra = [sdk_call(shop, "a1") for _ in range(2)]
    assert all(r.headers["x-tollgate-overage"] == "true" for r in extra)
    row = counter(shop.customer("a1").id, "premium")
    assert (row.calls, row.overage_calls, row.reserved_calls) == (3, 2, 0)
    assert row.overage_tokens == sum(r.parse().usage.total_tokens for r in extra)
    assert len(events("usage.overage_started")) == 1
    assert [r.overage for r in shop.usage_records("a1")] == [False, True, True]


def test_restrict_serves_the_standard_default_then_blocks_when_that_is_spent(shop: World):
    customer_on(
        shop,
        "r1",
        {
            "key": "rst",
            "on_limit": "restrict",
            "restrict_to": "standard",
            "limits": {"premium": {"calls": 1, "tokens": None}, "standard": {"calls": 1, "tokens": None}},
        },
    )
    assert sdk_call(shop, "r1").headers["x-tollgate-model"] == "gpt-premium"
    moved = sdk_call(shop, "r1")
    assert moved.headers["x-tollgate-model"] == "gpt-test"
    assert moved.headers["x-tollgate-restricted"] == "premium->standard"
    assert shop.upstream.requests[-1]["json"]["model"] == "fake-model"
    with pytest.raises(openai.RateLimitError) as blocked:
        sdk_call(shop, "r1")
    assert blocked.value.body["code"] == "usage_limit_reached"
    [_, record] = shop.usage_records("r1")
    assert (record.model_requested, record.model_served, record.restricted_from) == (
        "gpt-premium",
        "gpt-test",
        "premium",
    )


def hammer(world: World, user: str, threads: int, calls: int) -> Counter:
    barrier = threading.Barrier(threads)

    def worker(_):
        session = requests.Session()
        barrier.wait()
        out = []
        for _ in range(calls):
            resp = session.post(
                world.url + "/v1/chat/completions",
                timeout=60,
                headers={"Authorization": f"Bearer {world.key}"},
                json={"model": "gpt-premium", "user": user, "max_tokens": 5, "messages": MESSAGES},
            )
            out.append((resp.status_code, resp.json().get("error", {}).get("code")))
        return out

    with ThreadPoolExecutor(threads) as pool:
        return Counter(r for batch in pool.map(worker, range(threads)) for r in batch)


def test_fifty_threads_never_pass_a_call_limit(shop: World):
    customer_on(shop, "hot", {"key": "c100", "limits": {"premium": {"calls": 100, "tokens": None}}})
    outcome = hammer(shop, "hot", threads=50, calls=4)
    assert outcome == Counter({(200, None): 100, (429, "usage_limit_reached"): 100})
    row = counter(shop.customer("hot").id, "premium")
    assert (row.calls, row.reserved_calls) == (100, 0)
    assert len(shop.upstream.requests) == 100


def test_fifty_threads_never_pass_a_token_limit(shop: World):
    customer_on(shop, "hot", {"key": "t1k", "limits": {"premium": {"calls": None, "tokens": 1000}}})
    outcome = hammer(shop, "hot", threads=50, calls=4)
    assert outcome[(200, None)] > 0 and outcome[(429, "usage_limit_reached")] > 0
    row = counter(shop.customer("hot").id, "premium")
    served = shop.usage_records("hot")
    assert row.tokens <= 1000 and row.reserved_tokens == 0
    assert (
        row.tokens == sum(r.total_tokens for r in served) and row.calls == len(served) == outcome[(200, None)]
    )


def test_customers_left_on_v1_keep_v1_limits(shop: World):
    v1 = customer_on(shop, "stay", {"key": "plan", "limits": {"premium": {"calls": 1, "tokens": None}}})
    shop.give_customer("move", 10_000)
    assign(shop, "move", v1)
    v2 = clone_tier(db.session, v1)
    edit_tier(db.session, v2, {"limits": {"premium": {"calls": 3, "tokens": None}}})
    migrate_customers(db.session, shop.project, "plan", 1, 2, ["move"], "tests", now_utc())
    shop.commit()
    assert [call(shop, "stay").status_code for _ in range(3)] == [200, 429, 429]
    assert [call(shop, "move").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_max_budget_blocks_with_budget_exceeded_and_events_once(shop: World):
    # gpt-premium costs $0.001 per token here: a call uses 13 tokens ($0.013) and holds 27 ($0.027).
    customer_on(shop, "spender", {"key": "bud", "max_budget_usd": "0.1", "soft_budget_usd": "0.03"})
    statuses = [call(shop, "spender").status_code for _ in range(10)]
    assert 200 in statuses and statuses[-1] == 429
    last = call(shop, "spender")
    assert (
        last.json()["error"]["code"] == "budget_exceeded"
        and last.json()["error"]["type"] == "budget_exceeded"
    )
    spent = counter(shop.customer("spender").id, "total").spend_nusd
    assert spent <= 100_000_000 and spent == sum(r.cost_nusd for r in shop.usage_records("spender"))
    crossed = events("budget.threshold_crossed")
    assert len([e for e in crossed if e.data.get("soft_budget_usd")]) == 1
    assert len(events("budget.exceeded")) == 1


def test_budget_thresholds_fire_once_each_as_spend_passes_them(shop: World):
    # on_limit allow: calls past the budget are served as overage, so spend walks through 85%, 95%, 100%.
    customer_on(shop, "walker", {"key": "bwalk", "max_budget_usd": "0.05", "on_limit": "allow"})
    assert all(call(shop, "walker").status_code == 200 for _ in range(7))  # 7 x $0.013
    crossed = events("budget.threshold_crossed")
    assert sorted(e.data["percent"] for e in crossed) == [85, 95]
    [exceeded] = events("budget.exceeded")
    assert exceeded.customer_external_id == "walker" and exceeded.data["spend_usd"] == "0.052000000"


def test_model_budget_limits_only_that_model(shop: World):
    customer_on(shop, "mb", {"key": "mbud", "model_budgets_usd": {"gpt-premium": "0.05"}})
    statuses = [call(shop, "mb").status_code for _ in range(4)]
    assert statuses[0] == 200 and statuses[-1] == 429
    assert call(shop, "mb", model="gpt-test").status_code == 200


def test_rpm_limit_answers_429_with_retry_after(shop: World):
    customer_on(shop, "fast", {"key": "rpm3", "rpm_limit": 3})
    ok = [call(shop, "fast", model="gpt-test") for _ in range(3)]
    assert all(r.status_code == 200 for r in ok)
    assert ok[-1].headers["x-ratelimit-limit-requests"] == "3"
    refused = call(shop, "fast", model="gpt-test")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert shop.customer("fast").reserved_tokens == 0


def test_tpm_limit_counts_tokens_after_the_call(shop: World):
    customer_on(shop, "wordy", {"key": "tpm20", "tpm_limit": 20})
    first = call(shop, "wordy", model="gpt-test")
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] == 13
    assert call(shop, "wordy", model="gpt-test").status_code == 200  # 13 of 20 used: room left
    refused = call(shop, "wordy", model="gpt-test")
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]


def test_parallel_limit_refuses_a_second_call_in_flight(shop: World):
    customer_on(shop, "one", {"key": "par1", "max_parallel_requests": 1})
    shop.upstream.latency_gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(call, shop, "one", "gpt-test")
        while not shop.upstream.requests:  # the first call has reached the upstream and is held there
            shop.upstream.client_closed.wait(0.01)
        second = call(shop, "one", model="gpt-test")
        shop.upstream.latency_gate.set()
        assert first.result().status_code == 200
    assert second.status_code == 429 and "parallel" in second.json()["error"]["message"]
    assert call(shop, "one", model="gpt-test").status_code == 200  # the slot came back


def test_hard_cap_shrinks_the_completion_to_the_token_limit_left(shop: World):
    # The prompt is held at up to 42 tokens (the whole body errs high): 18 completion tokens fit.
    customer_on(shop, "tight", {"key": "t60", "limits": {"premium": {"calls": None, "tokens": 60}}})
    first = call(shop, "tight", max_tokens=50)
    assert first.status_code == 200
    sent = shop.upstream.requests[-1]["json"]["max_tokens"]
    assert 1 <= sent < 50 and first.json()["usage"]["completion_tokens"] == sent
    row = counter(shop.customer("tight").id, "premium")
    assert row.tokens == first.json()["usage"]["total_tokens"] <= 60
    refused = call(shop, "tight", max_tokens=50)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "usage_limit_reached"


def test_hard_cap_shrinks_the_completion_to_the_budget_left(shop: World):
    customer_on(shop, "thrifty", {"key": "b5", "max_budget_usd": "0.05"})
    first = call(shop, "thrifty", max_tokens=100)
    assert first.status_code == 200
    sent = shop.upstream.requests[-1]["json"]["max_tokens"]
    assert 1 <= sent < 100
    spent = counter(shop.customer("thrifty").id, "total").spend_nusd
    assert spent <= 50_000_000
    refused = call(shop, "thrifty", max_tokens=100)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"


def test_a_customers_own_budget_applies_on_top_of_its_tier(shop: World):
    customer_on(shop, "capped", {"key": "monthlyplan", "period": "month"})
    customer = shop.customer("capped")
    customer.max_budget_nusd = 80_000_000  # $0.08: three calls at $0.013 (each holding $0.047)
    shop.commit()
    statuses = [call(shop, "capped").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = call(shop, "capped")
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.json()["error"]["message"].startswith(
        "ExceededBudget: End User=capped over budget. Spend="
    )
    shop.give_customer("uncapped", 1_000_000)
    assert call(shop, "uncapped").status_code == 200  # the tier itself has no budget


def test_a_customers_own_budget_runs_on_its_own_period_from_when_it_was_set(shop: World):
    """LiteLLM's customer max_budget + budget_duration (SPEC 4): a window of its own, from when it
    was set, whatever the tier's period; the tier's period and counters are not touched."""
    _, admin = create_key(db.session, shop.project, "ops", "admin")
    customer_on(shop, "daily", {"key": "monthlyplan", "period": "month"})
    tier_start = shop.customer("daily").period_start
    update = {"user_id": "daily", "max_budget": 0.08, "budget_duration": "1d"}
    row = litellm(shop, admin, "/customer/update", update)
    set_at = shop.customer("daily").budget_set_at
    assert set_at is not None and row["budget_set_at"] == iso(set_at)
    table = row["litellm_budget_table"]
    assert (table["max_budget"], table["budget_duration"]) == (0.08, "1d")
    assert table["budget_reset_at"] == iso(set_at + timedelta(days=1))

    assert [call(shop, "daily").status_code for _ in range(4)] == [200, 200, 200, 429]
    info = requests.get(
        shop.url + "/customer/info?end_user_id=daily",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    ).json()
    window = counter(shop.customer("daily").id, "customer")
    assert window.period_start == set_at and info["spend"] == float(window.spend_nusd) / 1e9 > 0

    # A new amount keeps the window (and what it spent); a new duration starts a fresh one.
    litellm(shop, admin, "/customer/update", {"user_id": "daily", "max_budget": 0.02})
    assert shop.customer("daily").budget_set_at == set_at
    assert call(shop, "daily").status_code == 429
    litellm(shop, admin, "/customer/update", {"user_id": "daily", "max_budget": 0.08})

    # A day later the own window has rolled over: calls are served again, on the same tier period.
    customer = shop.customer("daily")
    customer.budget_set_at = set_at - timedelta(days=1, seconds=5)
    shop.commit()
    assert call(shop, "daily").status_code == 200
    assert shop.customer("daily").period_start == tier_start
    assert litellm(shop, admin, "/customer/info?end_user_id=daily", method="GET")["spend"] < info["spend"]

    litellm(shop, admin, "/customer/update", {"user_id": "daily", "budget_duration": "30d"})
    assert shop.customer("daily").budget_set_at > set_at

    refused = requests.post(
        shop.url + "/customer/new",
        json={"user_id": "nobudget", "budget_duration": "7d"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "budget_duration"


def litellm(world: World, admin: str, path: str, body: dict | None = None, method: str = "POST") -> dict:
    resp = requests.request(
        method, world.url + path, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_migrating_within_a_tier_keeps_the_cycle_and_its_use(shop: World):
    v1 = customer_on(
        shop, "cyc", {"key": "cycle", "period": "30d", "limits": {"premium": {"calls": 2, "tokens": None}}}
    )
    assert call(shop, "cyc").status_code == 200
    before = shop.customer("cyc").period_start
    clone_tier(db.session, v1)
    migrate_customers(db.session, shop.project, "cycle", 1, 2, None, "tests", now_utc())
    shop.commit()
    assert shop.customer("cyc").period_start == before
    assert [call(shop, "cyc").status_code for _ in range(2)] == [200, 429]  # one call left of two


def test_a_postpaid_hard_capped_tier_asks_the_upstream_for_no_more_than_its_share(shop: World):
    """Limits and budgets without a prepaid balance: hard_cap still caps the completion at what the
    period share holds, so an answer never spends past the tier's token limit or $ budget."""
    customer_on(
        shop,
        "postpaid",
        {
            "key": "post",
            "prepaid": False,
            "default_reserve_tokens": 300,
            "limits": {"premium": {"calls": None, "tokens": 5000}},
        },
    )
    body = {"model": "gpt-premium", "user": "postpaid", "messages": MESSAGES}
    resp = requests.post(
        shop.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {shop.key}"},
        timeout=30,
    )
    assert resp.status_code == 200
    assert shop.upstream.requests[-1]["json"]["max_tokens"] == 300
    customer_on(
        shop,
        "soft",
        {
            "key": "soft",
            "prepaid": False,
            "hard_cap": False,
            "limits": {"premium": {"calls": None, "tokens": 5000}},
        },
    )
    resp = requests.post(
        shop.url + "/v1/chat/completions",
        json=dict(body, user="soft"),
        headers={"Authorization": f"Bearer {shop.key}"},
        timeout=30,
    )
    assert resp.status_code == 200 and "max_tokens" not in shop.upstream.requests[-1]["json"]
