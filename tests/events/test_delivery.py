"""Outbound webhooks (SPEC 7.2; issue 11, acceptance 1 and 2): deliveries from the outbox, signed
per Standard Webhooks and verified here with the `standardwebhooks` library, retried, unsubscribed
on 410, and a hanging target never holding up a healthy one."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks import Webhook

from app.db import now_utc
from app.events.delivery import DELAYS_S, Dispatcher, Outcome, forget_old, next_wait_s
from app.extensions import db
from app.keys.operations import create_key
from app.models.event import Delivery, DeliveryAttempt, Hook
from tests.events.receiver import Receiver, serve
from tests.factories import World, chat


class Clock:
    """The sender's clock: the real time, moved on by the test (retries are due minutes and
    hours later)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return now_utc() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sender(world: World, clock: Clock) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(db.engine, world.secret_key, holder="tests:1", clock=clock)
    yield dispatcher
    dispatcher.pool.shutdown(wait=False, cancel_futures=True)


def api(world: World, admin: str, method: str, path: str, body: dict | None = None) -> dict:
    resp = requests.request(
        method, world.url + "/api" + path, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def subscribe(world: World, admin: str, url: str, event: str = "customer.created") -> dict:
    return api(world, admin, "POST", "/hooks", {"target_url": url, "event": event})


def new_customer(world: World, admin: str, customer_id: str) -> None:
    api(world, admin, "POST", "/customers", {"customer_id": customer_id, "token_balance": 10})


def deliveries(hook: dict, world: World, admin: str) -> list[dict]:
    return api(world, admin, "GET", f"/hooks/{hook['id']}/deliveries")["data"]


def test_every_delivery_is_signed_and_verified_with_standardwebhooks(world, admin, receiver, sender):
    hook = subscribe(world, admin, receiver.url + "/a")
    assert hook["secret"].startswith("whsec_")
    new_customer(world, admin, "acme")
    assert sender.tick() == 1
    [got] = receiver.wait_for("/a", 1, 10)
    assert sender.idle(10)
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)  # raises on a bad signature
    event = api(world, admin, "GET", "/events?type=customer.created")["data"][0]
    assert got.headers["webhook-id"] == event["id"] and payload == event
    assert json.loads(got.body) == event  # the body is SPEC 7.1's event, nothing around it
    with pytest.raises(Exception, match="signature"):
        Webhook(hook["secret"]).verify(got.body.replace("acme", "acmf"), got.headers)
    [row] = deliveries(hook, world, admin)
    assert (row["status"], row["attempts"], row["last_status"], row["event_id"]) == (
        "delivered",
        1,
        200,
        event["id"],
    )
    assert sender.tick() == 0  # delivered once: nothing is due any more


def test_a_target_failing_twice_gets_the_event_on_the_third_attempt(world, admin, receiver, sender, clock):
    receiver.answers["/flaky"] = [500, 500, 200]
    hook = subscribe(world, admin, receiver.url + "/flaky")
    new_customer(world, admin, "retry-me")
    for attempt in range(1, 4):
        assert sender.tick() == 1
        assert len(receiver.wait_for("/flaky", attempt, 10)) == attempt
        assert sender.idle(10)
        [row] = deliveries(hook, world, admin)
        if attempt < 3:
            assert (row["status"], row["attempts"], row["last_status"]) == ("pending", attempt, 500)
            assert row["last_error"].startswith("HTTP 500")
            assert sender.tick() == 0  # not due before its backoff
            clock.advance(DELAYS_S[attempt - 1] * 1.25 + 1)
    assert (row["status"], row["attempts"], row["delivered_at"] is not None) == ("delivered", 3, True)
    ids = {r.headers["webhook-id"] for r in receiver.on("/flaky")}
    assert len(ids) == 1  # one event id on every attempt: the consumer's idempotency key
    assert world.count(DeliveryAttempt) == 3


def test_a_410_unsubscribes_the_target(world, admin, receiver, sender):
    receiver.answers["/gone"] = [410]
    hook = subscribe(world, admin, receiver.url + "/gone")
    new_customer(world, admin, "first")
    new_customer(world, admin, "second")
    sender.tick()
    receiver.wait_for("/gone", 1, 10)
    assert sender.idle(10)
    listed = api(world, admin, "GET", "/hooks")["data"]
    assert [(h["id"], h["active"]) for h in listed] == [(hook["id"], False)]
    assert {d["status"] for d in deliveries(hook, world, admin)} == {"cancelled"}
    new_customer(world, admin, "third")  # no delivery is made for an unsubscribed hook
    assert len(deliveries(hook, world, admin)) == 2 and sender.tick() == 0


def test_a_hanging_target_does_not_delay_a_healthy_one(world, admin, receiver, sender):
    receiver.hang.add("/hangs")
    slow = subscribe(world, admin, receiver.url + "/hangs")
    fast = subscribe(world, admin, receiver.url + "/fast")
    for i in range(5):
        new_customer(world, admin, f"c{i}")
    started = time.monotonic()
    stop = threading.Event()
    running = threading.Thread(target=sender.serve, args=(stop,), daemon=True)
    running.start()  # as in the scheduler's process: a round every second
    try:
        assert len(receiver.wait_for("/fast", 5, 10)) == 5  # every healthy delivery
        assert receiver.wait_for("/hangs", 1, 10)  # the hanging target was attempted too
        assert time.monotonic() - started < 10
        assert len(receiver.on("/hangs")) == 2  # at most two at a time per hook
    finally:
        receiver.release.set()
        stop.set()
        running.join(15)
    assert sender.idle(15)
    assert {d["status"] for d in deliveries(fast, world, admin)} == {"delivered"}
    assert len(deliveries(slow, world, admin)) == 5


def test_a_failed_delivery_can_be_sent_again_now(world, admin, receiver, sender, clock):
    receiver.answers["/down"] = [503] * (len(DELAYS_S) + 1) + [200]
    hook = subscribe(world, admin, receiver.url + "/down")
    new_customer(world, admin, "patient")
    for attempt in range(1, len(DELAYS_S) + 2):
        assert sender.tick() == 1, attempt
        receiver.wait_for("/down", attempt, 10)
        assert sender.idle(10)
        clock.advance(DELAYS_S[min(attempt, len(DELAYS_S)) - 1] * 1.25 + 1)
    [row] = deliveries(hook, world, admin)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("failed", len(DELAYS_S) + 1, None)
    again = api(world, admin, "POST", f"/deliveries/{row['id']}/retry")
    assert (again["status"], again["attempts"]) == ("pending", 0)
    assert sender.tick() == 1
    receiver.wait_for("/down", len(DELAYS_S) + 2, 10)
    assert sender.idle(10)
    assert deliveries(hook, world, admin)[0]["status"] == "delivered"
    refused = requests.post(
        f"{world.url}/api/deliveries/{row['id']}/retry",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert refused.status_code == 409  # delivered: nothing to send again


def test_retries_span_more_than_a_day_and_honour_retry_after():
    rng = random.Random(7)
    shortest = sum(next_wait_s(n, Outcome(500, "x", 0), rng) or 0 for n in range(1, len(DELAYS_S) + 1))
    assert shortest > 24 * 3600
    assert next_wait_s(len(DELAYS_S) + 1, Outcome(500, "x", 0), rng) is None
    assert next_wait_s(1, Outcome(429, "x", 0, retry_after_s=120), rng) == 120


def test_events_of_types_nobody_subscribed_to_make_no_deliveries(world, admin, receiver):
    subscribe(world, admin, receiver.url + "/low", "tokens.low")
    new_customer(world, admin, "nobody-listens")
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert world.count(Hook) == 1


def test_first_calls_are_as_fast_with_a_hanging_target_subscribed(world, admin, receiver, sender):
    """Deliveries never ride on a call: 50 first calls (each makes a customer, so an event and a
    delivery) answer as fast with a hanging subscriber as with none (a generous bound: the
    machine is shared)."""

    def fifty_first_calls(prefix: str) -> float:
        started = time.monotonic()
        for i in range(50):
            assert chat(world.url, world.key, f"{prefix}-{i}").status_code == 200
        return time.monotonic() - started

    without = fifty_first_calls("plain")
    receiver.hang.add("/stuck")
    subscribe(world, admin, receiver.url + "/stuck")
    stop = threading.Event()
    running = threading.Thread(target=sender.serve, args=(stop,), daemon=True)
    running.start()
    try:
        with_hanging = fifty_first_calls("watched")
        assert receiver.wait_for("/stuck", 2, 10)  # the target was being tried meanwhile
    finally:
        receiver.release.set()
        stop.set()
        running.join(15)
    assert with_hanging < without * 2 + 1, (with_hanging, without)


def test_ended_deliveries_are_kept_thirty_days(world, admin, receiver, sender, clock):
    hook = subscribe(world, admin, receiver.url + "/kept")
    new_customer(world, admin, "old")
    sender.tick()
    receiver.wait_for("/kept", 1, 10)
    assert sender.idle(10)
    new_customer(world, admin, "waiting")  # pending: never dropped, however old
    assert forget_old(db.engine, now_utc() + timedelta(days=29)) == 0
    assert forget_old(db.engine, now_utc() + timedelta(days=31)) == 1
    assert [d["status"] for d in deliveries(hook, world, admin)] == ["pending"]
    assert world.count(DeliveryAttempt) == 0  # the attempts went with their delivery
