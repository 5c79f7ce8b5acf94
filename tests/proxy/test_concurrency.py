"""Many threads against one customer: SPEC 11 holds afterwards (acceptance 4 and 5).

CI runs the whole suite on SQLite and again on PostgreSQL, so each test here runs on both.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from app.extensions import db
from app.metering import audit
from app.models import Customer, Event, LedgerEntry
from tests.factories import World

PROMPT = [{"role": "user", "content": "count the tokens in this prompt please"}]


def hammer(world: World, user: str, threads: int, calls: int, max_tokens: int = 10) -> Counter:
    session = threading.local()
    barrier = threading.Barrier(threads)

    def worker(_: int) -> list[tuple[int, str | None]]:
        session.s = requests.Session()
        barrier.wait()
        out = []
        for _ in range(calls):
            resp = session.s.post(
                world.url + "/v1/chat/completions",
                timeout=60,
                headers={"Authorization": f"Bearer {world.key}"},
                json={"model": "gpt-test", "user": user, "max_tokens": max_tokens, "messages": PROMPT},
            )
            out.append((resp.status_code, resp.json().get("error", {}).get("code")))
        return out

    with ThreadPoolExecutor(threads) as pool:
        results = [r for batch in pool.map(worker, range(threads)) for r in batch]
    return Counter(results)


def test_fifty_threads_one_customer_balance_for_half(world: World, app):
    per_call = 3 + len(PROMPT[0]["content"].split()) + 10  # what the fake upstream reports per call
    world.give_customer("hot", 500 * per_call)
    outcome = hammer(world, "hot", threads=50, calls=20)
    served = outcome[(200, None)]
    refused = outcome[(429, "insufficient_tokens")]
    assert served + refused == 1000, outcome
    assert 0 < served < 1000 and refused > 0
    customer = world.customer("hot")
    assert customer.token_balance >= 0
    assert customer.reserved_tokens == 0
    # Exactly one usage record per call the upstream served, none for refused calls.
    records = world.usage_records("hot")
    assert len(records) == served == len(world.upstream.requests)
    assert customer.token_balance == 500 * per_call - sum(r.tokens_charged for r in records)
    with db.engine.connect() as conn:
        assert audit.verify(conn) == []
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output


def test_twenty_concurrent_first_calls_create_one_customer(world: World):
    outcome = hammer(world, "brand-new", threads=20, calls=1, max_tokens=2)
    assert outcome == Counter({(200, None): 20})
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 1
    grants = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "initial_grant")).all()
    assert [g.amount for g in grants] == [100_000]
    created = db.session.scalars(select(Event).where(Event.type == "customer.created")).all()
    assert len(created) == 1 and created[0].customer_external_id == "brand-new"


def test_zero_initial_tokens_refuses_first_call(world: World):
    world.set(new_customer_initial_tokens=0)
    resp = requests.post(
        world.url + "/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "gpt-test", "user": "newbie", "messages": PROMPT},
    )
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "insufficient_tokens"
    assert resp.json()["error"]["message"].startswith("No tokens")
    customer = world.customer("newbie")
    assert customer is not None and customer.token_balance == 0
    assert [e.kind for e in world.ledger("newbie")] == ["initial_grant"]
    assert world.upstream.requests == []
