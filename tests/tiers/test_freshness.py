"""No call is admitted under stale rules (SPEC 3.5, 11.7): a change answered by /api or the LiteLLM
routes applies to every call sent after the answer, though the proxy's snapshot has not reloaded.

The snapshot's clock is frozen for each test, so it never reloads: the proxy must find what changed
through the customer's row and the database, never through the snapshot catching up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from app.extensions import db
from app.keys.operations import create_key
from tests.factories import World, chat

LIMIT_ONE = {"limits": {"standard": {"calls": 1, "tokens": None}}, "on_limit": "block"}


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


@pytest.fixture
def frozen(world: World) -> Iterator[None]:
    """The proxy's snapshot as it is now, for the whole test."""
    cache = world.app.extensions["tollgate.gateway"].cache
    saved, still = cache.clock, cache.clock()
    cache.clock = lambda: still
    cache.invalidate()
    cache.current()
    yield
    cache.clock = saved


def send(world: World, key: str, method: str, path: str, body: dict | None = None) -> dict:
    resp = requests.request(
        method, world.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def burst(world: World, customer_id: str, calls: int = 10) -> list[tuple[int, str | None]]:
    """Calls sent at once, right after a change's answer: (status, error code) each."""
    results: list[tuple[int, str | None]] = []
    start = threading.Barrier(calls)

    def one() -> None:
        start.wait()
        resp = chat(world.url, world.key, customer_id)
        results.append((resp.status_code, None if resp.ok else resp.json()["error"]["code"]))

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(results, key=lambda r: r[0])


def test_a_new_tier_and_its_assignment_apply_to_the_next_calls(world: World, admin: str, frozen):
    send(world, admin, "POST", "/api/tiers", {"key": "one", "prepaid": False, **LIMIT_ONE})
    send(world, admin, "POST", "/api/customers", {"customer_id": "fresh", "tier": "one"})
    assert burst(world, "fresh") == [(200, None)] + [(429, "usage_limit_reached")] * 9


def test_a_litellm_budget_and_customer_apply_to_the_next_calls(world: World, admin: str, frozen):
    send(world, admin, "POST", "/budget/new", {"budget_id": "tiny", "max_budget": 0.0000001})
    send(world, admin, "POST", "/customer/new", {"user_id": "litellm-user", "budget_id": "tiny"})
    assert burst(world, "litellm-user") == [(429, "budget_exceeded")] * 10


def test_a_clone_edited_then_migrated_to_applies_to_the_next_calls(world: World, admin: str):
    send(world, admin, "POST", "/api/tiers", {"key": "plan", "prepaid": False})
    send(world, admin, "POST", "/api/customers", {"customer_id": "mover", "tier": "plan"})
    cache = world.app.extensions["tollgate.gateway"].cache
    cache.invalidate()
    assert chat(world.url, world.key, "mover").status_code == 200  # the snapshot knows v1, locked
    saved, still = cache.clock, cache.clock()
    cache.clock = lambda: still
    try:
        send(world, admin, "POST", "/api/tiers/plan/versions/1/clone")
        cache.invalidate()
        cache.current()  # the snapshot now holds v2 as it was cloned: unlocked, no limits
        send(world, admin, "PATCH", "/api/tiers/plan/versions/2", LIMIT_ONE)
        send(world, admin, "POST", "/api/tiers/plan/migrate", {"from_version": 1, "to_version": 2})
        assert burst(world, "mover") == [(200, None)] + [(429, "usage_limit_reached")] * 9
    finally:
        cache.clock = saved


def test_a_locked_budget_updated_through_litellm_applies_to_the_next_calls(world: World, admin: str):
    send(world, admin, "POST", "/budget/new", {"budget_id": "team", "max_budget": 100})
    send(world, admin, "POST", "/customer/new", {"user_id": "member", "budget_id": "team"})
    cache = world.app.extensions["tollgate.gateway"].cache
    cache.invalidate()
    assert chat(world.url, world.key, "member").status_code == 200
    saved, still = cache.clock, cache.clock()
    cache.clock = lambda: still
    try:
        send(world, admin, "POST", "/budget/update", {"budget_id": "team", "max_budget": 0.0000001})
        assert burst(world, "member") == [(429, "budget_exceeded")] * 10
    finally:
        cache.clock = saved


def test_block_unblock_and_a_customers_own_budget_apply_to_the_next_calls(world: World, admin: str, frozen):
    send(world, admin, "POST", "/api/customers", {"customer_id": "watched", "token_balance": 100_000})
    send(world, admin, "PATCH", "/api/customers/watched", {"blocked": True})
    assert burst(world, "watched") == [(403, "customer_blocked")] * 10
    send(world, admin, "PATCH", "/api/customers/watched", {"blocked": False})
    assert burst(world, "watched") == [(200, None)] * 10
    send(world, admin, "POST", "/customer/update", {"user_id": "watched", "max_budget": 0})
    assert burst(world, "watched") == [(429, "budget_exceeded")] * 10


def test_a_tpm_budget_made_just_before_stops_the_calls_after_the_first(world: World, admin: str, frozen):
    """LiteLLM's own end-user tpm test: a `tpm_limit: 2` budget, then calls at once after it."""
    send(world, admin, "POST", "/budget/new", {"budget_id": "slow", "tpm_limit": 2})
    send(world, admin, "POST", "/end_user/new", {"user_id": "tpm-user", "budget_id": "slow"})
    results = [chat(world.url, world.key, "tpm-user") for _ in range(10)]
    served = [r for r in results if r.status_code == 200]
    assert len(served) < 5
    assert all(
        r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        for r in results
        if not r.ok
    )
