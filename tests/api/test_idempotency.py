"""Idempotency-Key (SPEC 6, issue 6 acceptance 3): ten sends, five at once, credit once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.extensions import db
from app.keys.operations import create_key
from tests.factories import World


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    world.give_customer("buyer", 0)
    return key


def credit(world: World, key: str, idem: str, amount: int = 500) -> requests.Response:
    return requests.post(
        f"{world.url}/api/customers/buyer/tokens",
        timeout=30,
        json={"amount": amount},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
    )


def test_ten_sends_five_at_once_credit_once(world: World, admin: str):
    world.upstream.latency_gate = None
    barrier = threading.Barrier(5)

    def concurrent(_):
        barrier.wait()
        return credit(world, admin, "order-42")

    with ThreadPoolExecutor(5) as pool:
        first_wave = list(pool.map(concurrent, range(5)))
    later = [credit(world, admin, "order-42") for _ in range(5)]
    answers = first_wave + later
    done = [r for r in answers if r.status_code == 200]
    in_flight = [r for r in answers if r.status_code == 409]
    assert len(done) + len(in_flight) == 10 and done
    assert all(r.json()["error"]["code"] == "idempotency_in_progress" for r in in_flight)
    assert len({r.json()["id"] for r in done}) == 1  # every success is the first response
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r in later)
    assert world.customer("buyer").token_balance == 500
    assert [e.kind for e in world.ledger("buyer")] == ["initial_grant", "adjustment"]


def test_same_key_with_another_body_is_a_conflict(world: World, admin: str):
    assert credit(world, admin, "k1", 100).status_code == 200
    again = credit(world, admin, "k1", 200)
    assert again.status_code == 409 and again.json()["error"]["code"] == "idempotency_conflict"
    assert world.customer("buyer").token_balance == 100


def test_a_refused_attempt_leaves_the_key_free(world: World, admin: str):
    bad = requests.post(
        f"{world.url}/api/customers/buyer/tokens",
        timeout=30,
        json={"amount": -5, "mode": "set"},
        headers={"Authorization": f"Bearer {admin}", "Idempotency-Key": "k2"},
    )
    assert bad.status_code == 400 and world.customer("buyer").token_balance == 0
    # Nothing was done, so the key is not spent: the corrected request goes through once.
    assert credit(world, admin, "k2", 70).status_code == 200
    assert credit(world, admin, "k2", 70).headers["Idempotent-Replayed"] == "true"
    assert world.customer("buyer").token_balance == 70
