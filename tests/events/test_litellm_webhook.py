"""LiteLLM's webhook (SPEC 7.4; issue 11, acceptance 5): spend_tracked for each customer call with
`spend` = the call's exact cost, budget_crossed for a customer, through the outbox, at least once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from app.events.delivery import Dispatcher
from app.events.litellm_webhook import NULLS
from app.extensions import db
from app.keys.operations import create_key
from app.models.api_key import hash_key
from app.models.event import Event
from app.scheduler import take_lease
from tests.events.receiver import Receiver, serve
from tests.events.test_delivery import Clock
from tests.factories import World, chat

HOLDER = "tests:1"
# A call of 200 completion tokens costs about 93% of it, so the first call crosses 85% and the
# second, shortened by hard_cap to what is left, 95% (gpt-test: $0.15 / $0.60 per million).
BUDGET = 0.00013


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sender_for(world: World, clock: Clock, webhook_url: str | None = None) -> Dispatcher:
    assert take_lease(db.engine, HOLDER, clock())  # LiteLLM's feed runs on the scheduler's leader
    return Dispatcher(db.engine, world.secret_key, holder=HOLDER, clock=clock, webhook_url=webhook_url)


def posts(receiver: Receiver, path: str) -> list[dict]:
    return [json.loads(r.body) for r in receiver.on(path)]


def reload(world: World) -> None:
    world.app.extensions["tollgate.gateway"].cache.invalidate()  # the next check (within a second)


def test_each_customer_call_reports_its_exact_cost(world: World, receiver: Receiver, clock: Clock):
    world.set(litellm_webhook_url=receiver.url + "/litellm")
    reload(world)
    costs = []
    for customer in ("alice", "bob", "alice"):
        served = chat(world.url, world.key, customer)
        assert served.status_code == 200
        costs.append((customer, Decimal(served.headers["x-litellm-response-cost"])))
    project_level = requests.post(
        world.url + "/v1/chat/completions",
        json={"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=30,
    )
    assert project_level.status_code == 200  # no customer: nothing is owed for it
    sender = sender_for(world, clock)
    sender.tick()
    got = receiver.wait_for("/litellm", 3, 10)
    assert sender.idle(10)
    bodies = [json.loads(r.body) for r in got]
    assert [(b["customer_id"], Decimal(str(b["spend"]))) for b in bodies] == costs
    for body in bodies:
        assert (body["event"], body["event_group"], body["token"]) == (
            "spend_tracked",
            "customer",
            hash_key(world.key),
        )
        assert all(body[name] is None for name in NULLS)
        assert (
            body["event_message"]
            == f"Customer spend tracked. Customer={body['customer_id']}, spend={body['spend']}"
        )
    sender.tick()
    assert sender.idle(10) and len(receiver.on("/litellm")) == 3  # each once


def test_a_failing_target_gets_every_call_once_it_recovers(world: World, receiver: Receiver, clock: Clock):
    receiver.answers["/down"] = [503, 503, 200]
    world.set(litellm_webhook_url=receiver.url + "/down")
    reload(world)
    assert chat(world.url, world.key, "carol").status_code == 200
    assert chat(world.url, world.key, "dave").status_code == 200
    sender = sender_for(world, clock)
    sender.tick()
    receiver.wait_for("/down", 1, 10)
    assert sender.idle(10)
    sender.tick()  # backing off: nothing sent before its time
    assert sender.idle(10) and len(receiver.on("/down")) == 1
    clock.advance(6)
    sender.tick()
    receiver.wait_for("/down", 2, 10)
    assert sender.idle(10)
    clock.advance(31)
    assert take_lease(db.engine, HOLDER, clock())
    sender.tick()
    got = receiver.wait_for("/down", 4, 10)
    assert sender.idle(10)
    assert [json.loads(r.body)["customer_id"] for r in got] == ["carol", "carol", "carol", "dave"]


def test_webhook_url_reaches_every_project_and_budget_crossings_are_sent(
    world: World, receiver: Receiver, clock
):
    """WEBHOOK_URL (LiteLLM's environment variable) when the project names none; a customer's own
    budget's 85% and 95% crossed: threshold_crossed with the spend so far and max_budget."""
    url = receiver.url + "/env"
    world.app.extensions["tollgate.gateway"].cache.webhook_url = url
    reload(world)
    _, admin = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    try:
        update = requests.post(
            world.url + "/customer/new",
            json={"user_id": "frugal", "max_budget": BUDGET},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert update.status_code == 200, update.text
        served = []
        for _ in range(30):  # until the budget refuses
            resp = chat(world.url, world.key, "frugal", max_tokens=200)
            if resp.status_code != 200:
                break
            served.append(Decimal(resp.headers["x-litellm-response-cost"]))
        assert resp.status_code == 429 and len(served) >= 2
        sender = sender_for(world, clock, webhook_url=url)
        sender.tick()
        receiver.wait_for("/env", len(served) + 2, 10)
        assert sender.idle(10)
        bodies = posts(receiver, "/env")
        assert [Decimal(str(b["spend"])) for b in bodies if b["event"] == "spend_tracked"] == served
        crossed = [b for b in bodies if b["event"] == "threshold_crossed"]
        assert [b["event_message"].split(" for ")[0] for b in crossed] == [
            "85% Threshold Crossed",
            "95% Threshold Crossed",
        ]
        assert all(b["customer_id"] == "frugal" and b["max_budget"] == BUDGET for b in crossed)
        assert Decimal(str(crossed[-1]["spend"])) <= Decimal(str(BUDGET))
        [refused] = [b for b in bodies if b["event"] == "budget_crossed"]  # the call the budget refused
        assert refused["max_budget"] == BUDGET and Decimal(str(refused["spend"])) == sum(served)
    finally:
        world.app.extensions["tollgate.gateway"].cache.webhook_url = None
        reload(world)


def test_budget_events_of_a_project_without_the_webhook_are_owed_to_no_one(world: World, clock):
    _, admin = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    requests.post(
        world.url + "/customer/new",
        json={"user_id": "quiet", "max_budget": BUDGET},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    while chat(world.url, world.key, "quiet", max_tokens=200).status_code == 200:
        pass
    db.session.expire_all()
    assert db.session.query(Event).filter(Event.litellm_pending.is_(True)).count() == 3  # 85%, 95%, exceeded
    sender = sender_for(world, clock)
    sender.tick()
    assert sender.idle(10)
    db.session.expire_all()
    assert db.session.query(Event).filter(Event.litellm_pending.is_(True)).count() == 0
    budget_events = db.session.query(Event).filter(Event.type.like("budget.%")).count()
    assert budget_events == 3  # the events stay (the API and hooks have them); only the flag goes
