"""tokens.low once per crossing of the project's threshold; tokens.exhausted when the balance runs out."""

from __future__ import annotations

from sqlalchemy import select

from app.db import now_utc
from app.extensions import db
from app.models import Customer, Event, LedgerEntry
from tests.factories import World, assign, chat


def call(world: World, user: str):
    return chat(world.url, world.key, user)


def kinds(kind: str) -> list[Event]:
    db.session.expire_all()
    return list(db.session.scalars(select(Event).where(Event.type == kind).order_by(Event.id)))


def credit(world: World, customer_id: str, amount: int) -> None:
    customer = world.customer(customer_id)
    customer.token_balance += amount
    db.session.add(
        LedgerEntry(
            project_id=customer.project_id,
            customer_id=customer.id,
            kind="adjustment",
            amount=amount,
            balance_after=customer.token_balance,
            source="tests",
        )
    )
    world.commit()


def test_tokens_low_fires_once_per_crossing(world: World):
    world.set(low_balance_tokens=100)
    world.give_customer("dwindle", 150)  # each call uses 11 tokens
    for _ in range(8):
        assert call(world, "dwindle").status_code == 200
    [low] = kinds("tokens.low")
    assert (
        low.customer_external_id == "dwindle"
        and low.data["threshold"] == 100
        and low.data["token_balance"] < 100
    )
    credit(world, "dwindle", 200)
    assert call(world, "dwindle").status_code == 200  # back above: the flag clears
    assert not world.customer("dwindle").low_balance_notified
    assert len(kinds("tokens.low")) == 1
    while world.customer("dwindle").token_balance >= 100:
        assert call(world, "dwindle").status_code == 200
    assert len(kinds("tokens.low")) == 2


def test_tokens_exhausted_when_a_postpaid_balance_runs_out(world: World):
    tier = world.add_tier({"key": "postpaid", "prepaid": False})
    world.give_customer("owes", 15)
    assign(world, "owes", tier, now=now_utc())
    assert [call(world, "owes").status_code for _ in range(3)] == [200, 200, 200]
    assert db.session.scalar(select(Customer.token_balance).where(Customer.external_id == "owes")) < 0
    [gone] = kinds("tokens.exhausted")
    assert gone.customer_external_id == "owes"
