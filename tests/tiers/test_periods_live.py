"""Periods and replenishment across a boundary, the scheduler's lease and jobs (issue 4, acceptance 3, 7)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from app.db import now_utc, write_transaction
from app.extensions import db
from app.metering import audit
from app.models import LedgerEntry
from app.scheduler import Scheduler, give_up_lease, take_lease
from tests.factories import World, assign, chat

BEFORE = datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC)
AFTER = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)


def freeze(world: World, moment: datetime) -> None:
    world.app.extensions["tollgate.gateway"].clock = lambda: moment


@pytest.fixture(autouse=True)
def real_clock_after(world: World):
    yield
    world.app.extensions["tollgate.gateway"].clock = now_utc


def call(world: World, user: str):
    return chat(world.url, world.key, user)


def replenishments(world: World, customer_id: str) -> list[LedgerEntry]:
    db.session.expire_all()
    return [e for e in world.ledger(customer_id) if e.kind == "replenishment"]


def monthly(world: World, customer_id: str, balance: int, **spec):
    tier = world.add_tier({"key": "monthly", "period": "month", "replenish_tokens": 1000, **spec})
    world.give_customer(customer_id, balance)
    assign(world, customer_id, tier, now=BEFORE)
    return tier


def test_scheduler_and_twenty_requests_race_across_a_month_boundary(world: World):
    tier = monthly(world, "m1", 500, replenish_mode="reset")
    freeze(world, BEFORE)
    assert call(world, "m1").status_code == 200
    assert replenishments(world, "m1") == []
    freeze(world, AFTER)
    scheduler = Scheduler(db.engine, holder="tests", clock=lambda: AFTER)
    barrier = threading.Barrier(21)

    def request(_):
        barrier.wait()
        return call(world, "m1").status_code

    def job():
        barrier.wait()
        return scheduler.tick()

    with ThreadPoolExecutor(21) as pool:
        ran = pool.submit(job)
        statuses = list(pool.map(request, range(20)))
    assert statuses == [200] * 20 and "period-rollover" in ran.result()
    [entry] = replenishments(world, "m1")
    assert entry.idempotency_key == f"replenish:{tier.id}:2026-12-01T00:00:00Z"
    after_reset = [r for r in world.usage_records("m1")][1:]
    customer = world.customer("m1")
    assert customer.token_balance == 1000 - sum(r.tokens_charged for r in after_reset)
    assert customer.period_start == datetime(2026, 12, 1, tzinfo=UTC)
    assert customer.period_end == datetime(2027, 1, 1, tzinfo=UTC)
    with db.engine.connect() as conn:
        assert audit.verify(conn) == []
    # A second run of the job changes nothing.
    assert Scheduler(db.engine, holder="tests", clock=lambda: AFTER).tick() == [
        "period-rollover",
        "expired-holds",
        "delivery-retention",
        "refusal-retention",
    ]
    assert len(replenishments(world, "m1")) == 1


def test_add_mode_tops_up_to_max_balance(world: World):
    monthly(world, "a1", 700, replenish_mode="add", max_balance=1200)
    freeze(world, AFTER)
    assert call(world, "a1").status_code == 200
    [entry] = replenishments(world, "a1")
    assert entry.amount == 500 and entry.balance_after == 1200
    assert world.customer("a1").token_balance == 1200 - world.usage_records("a1")[0].tokens_charged


def test_assignment_anchored_tier_rolls_over_on_the_assignment_day(world: World):
    tier = world.add_tier(
        {"key": "anniv", "period": "month", "anchor": "assignment", "replenish_tokens": 300}
    )
    world.give_customer("s1", 50)
    assigned = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    assign(world, "s1", tier, now=assigned)
    freeze(world, datetime(2026, 2, 15, 9, 59, tzinfo=UTC))
    assert call(world, "s1").status_code == 200
    assert replenishments(world, "s1") == []
    freeze(world, datetime(2026, 2, 15, 10, 0, 1, tzinfo=UTC))
    assert call(world, "s1").status_code == 200
    [entry] = replenishments(world, "s1")
    assert entry.balance_after == 300
    assert world.customer("s1").period_end == datetime(2026, 3, 15, 10, 0, tzinfo=UTC)


def test_period_counters_start_fresh_in_the_new_period(world: World):
    monthly(world, "lim", 10_000, limits={"standard": {"calls": 1, "tokens": None}})
    freeze(world, BEFORE)
    assert [call(world, "lim").status_code for _ in range(2)] == [200, 429]
    freeze(world, AFTER)
    assert call(world, "lim").status_code == 200


def test_two_schedulers_never_both_lead(world: World):
    now = datetime(2026, 6, 1, tzinfo=UTC)
    engine = db.engine
    barrier = threading.Barrier(2)

    def contend(name):
        barrier.wait()
        return take_lease(engine, name, now)

    with ThreadPoolExecutor(2) as pool:
        won = list(pool.map(contend, ["one", "two"]))
    assert sorted(won) == [False, True]
    leader, other = ("one", "two") if won[0] else ("two", "one")
    assert take_lease(db.engine, leader, now + timedelta(seconds=10))  # renewal
    assert not take_lease(db.engine, other, now + timedelta(seconds=20))
    assert Scheduler(db.engine, holder=other, clock=lambda: now + timedelta(seconds=20)).tick() == []
    # The leader stops renewing: after the lease expires the other takes over.
    assert take_lease(db.engine, other, now + timedelta(seconds=41))
    # A leader that stops cleanly hands the lease back at once.
    give_up_lease(db.engine, other)
    assert take_lease(db.engine, leader, now + timedelta(seconds=42))


def test_expired_holds_are_released_by_the_scheduler(world: World):
    world.give_customer("stuck", 1000)
    with write_transaction(db.engine) as conn:
        from app.metering.quota import customers

        conn.execute(
            customers.update()
            .where(customers.c.external_id == "stuck")
            .values(reserved_tokens=400, reservation_expires_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    sched = Scheduler(db.engine, holder="tests", clock=lambda: datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert "expired-holds" in sched.tick()
    assert world.customer("stuck").reserved_tokens == 0
    assert sched.tick() == []  # nothing due again within the minute
