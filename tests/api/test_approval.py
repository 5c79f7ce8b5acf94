"""The approval queue (SPEC 6, 7.1; issue 11, item 2): customers created with 0 initial tokens
await approval, Approve credits them once, and `customer.updated` names only what changed."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from app.extensions import db
from app.keys.operations import create_key
from app.models.ledger import LedgerEntry
from tests.api.test_customers import api, error
from tests.factories import World, chat


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.set(new_customer_initial_tokens=0)  # "no access until tokens are added"
    return key


def events(world: World, admin: str, kind: str) -> list[dict]:
    return api(world, admin, "GET", f"/events?type={kind}").json()["data"]


def test_a_customer_made_with_no_tokens_awaits_approval_until_approved(world: World, admin: str):
    refused = chat(world.url, world.key, "newcomer")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_tokens"
    assert api(world, admin, "POST", "/customers", json={"customer_id": "second"}).status_code == 201
    assert (
        api(world, admin, "POST", "/customers", json={"customer_id": "paid", "token_balance": 50}).status_code
        == 201
    )
    [first, second] = events(world, admin, "customer.awaiting_approval")[::-1]
    assert (first["customer_id"], second["customer_id"]) == ("newcomer", "second")
    waiting = api(world, admin, "GET", "/customers?awaiting_approval=true").json()["data"]
    assert [c["customer_id"] for c in waiting] == ["newcomer", "second"]  # oldest first
    others = api(world, admin, "GET", "/customers?awaiting_approval=false").json()["data"]
    assert [c["customer_id"] for c in others] == ["paid"]

    no_amount = api(world, admin, "POST", "/customers/newcomer/approve")
    assert no_amount.status_code == 400 and error(no_amount)["param"] == "tokens"
    settings = api(world, admin, "PATCH", "/settings", json={"approval_tokens": 5000})
    assert settings.json()["approval_tokens"] == 5000
    approved = api(world, admin, "POST", "/customers/newcomer/approve")
    assert approved.status_code == 200, approved.text
    assert (approved.json()["kind"], approved.json()["amount"], approved.json()["reason"]) == (
        "adjustment",
        5000,
        "approved",
    )
    [event] = events(world, admin, "customer.approved")
    assert event["customer_id"] == "newcomer" and event["data"]["tokens"] == 5000
    assert chat(world.url, world.key, "newcomer").status_code == 200
    again = api(world, admin, "POST", "/customers/newcomer/approve", json={"tokens": 10})
    assert again.status_code == 409 and error(again)["code"] == "conflict"
    explicit = api(world, admin, "POST", "/customers/second/approve", json={"tokens": 7})
    assert explicit.json()["amount"] == 7
    assert api(world, admin, "GET", "/customers?awaiting_approval=true").json()["data"] == []
    assert api(world, admin, "POST", "/customers/paid/approve").status_code == 409


def test_two_approvals_at_once_credit_once(world: World, admin: str):
    assert api(world, admin, "POST", "/customers", json={"customer_id": "racer"}).status_code == 201
    start = threading.Barrier(4)
    statuses: list[int] = []

    def approve() -> None:
        start.wait()
        statuses.append(
            api(world, admin, "POST", "/customers/racer/approve", json={"tokens": 100}).status_code
        )

    threads = [threading.Thread(target=approve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(statuses) == {200: 1, 409: 3}
    credits = db.session.scalars(select(LedgerEntry).where(LedgerEntry.reason == "approved")).all()
    assert [c.amount for c in credits] == [100]
    assert world.customer("racer").token_balance == 100


def test_customer_updated_names_only_the_fields_that_changed(world: World, admin: str):
    api(world, admin, "POST", "/customers", json={"customer_id": "acme", "name": "Acme", "token_balance": 5})
    changed = api(world, admin, "PATCH", "/customers/acme", json={"name": "Acme", "email": "ops@acme.test"})
    assert changed.status_code == 200
    [event] = events(world, admin, "customer.updated")
    assert event["data"]["changed"] == ["email"]
    same = api(world, admin, "PATCH", "/customers/acme", json={"name": "Acme", "email": "ops@acme.test"})
    assert same.status_code == 200
    assert len(events(world, admin, "customer.updated")) == 1  # nothing changed: no event
