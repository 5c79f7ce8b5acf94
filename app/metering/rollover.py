"""Period rollover and replenishment (SPEC 5.3): lazily on a customer's next call, and by the
scheduler; exactly one replenishment ledger entry per customer per period, whoever gets there first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, select, update

from app.db import iso, write_transaction
from app.events import recorder
from app.metering import periods
from app.metering.allowance import TierRules
from app.metering.quota import customers, ledger


@dataclass(frozen=True)
class Due:
    """A customer whose period has ended, as read just before the rollover."""

    customer_pk: int
    project_id: int
    external_id: str
    tier_id: int
    period_start: datetime | None
    tier_assigned_at: datetime


MOVE = (
    update(customers)
    .where(
        customers.c.id == bindparam("pk"),
        customers.c.tier_id == bindparam("tier"),
        customers.c.period_end <= bindparam("now"),
        # Whoever moves the period first does the replenishment; everyone else finds it moved.
        customers.c.period_start == bindparam("old_start"),
    )
    .values(period_start=bindparam("new_start"), period_end=bindparam("new_end"))
    .returning(customers.c.token_balance)
)


def roll_over(engine: Engine, due: Due, rules: TierRules, now: datetime, source: str) -> bool:
    """Start the customer's current period and replenish its balance. False if someone already did."""
    start, end = periods.window(rules.period, rules.anchor, due.tier_assigned_at, now)
    with write_transaction(engine) as conn:
        # The first statement writes, so SQLite takes its write lock before anything is read.
        balance = conn.execute(
            MOVE,
            {
                "pk": due.customer_pk,
                "tier": due.tier_id,
                "now": now,
                "old_start": due.period_start,
                "new_start": start,
                "new_end": end,
            },
        ).scalar()
        if balance is None:
            return False
        if rules.replenish_tokens:
            _replenish(conn, due, rules, start, balance, now, source)
    return True


def _replenish(
    conn, due: Due, rules: TierRules, start: datetime, balance: int, now: datetime, source: str
) -> None:
    delta = periods.replenishment(rules.replenish_mode, rules.replenish_tokens, rules.max_balance, balance)
    if delta:
        conn.execute(
            update(customers)
            .where(customers.c.id == due.customer_pk)
            .values(token_balance=customers.c.token_balance + delta)
        )
    # The unique (customer, idempotency key) makes a second entry for this period fail the whole
    # transaction, so a race can never credit twice.
    conn.execute(
        ledger.insert().values(
            project_id=due.project_id,
            customer_id=due.customer_pk,
            kind="replenishment",
            amount=delta,
            balance_after=balance + delta,
            source=source,
            reason=f"{rules.replenish_mode} {rules.replenish_tokens} for the period from {iso(start)}",
            idempotency_key=f"replenish:{due.tier_id}:{iso(start)}",
            created_at=now,
        )
    )
    recorder.record(
        conn,
        project_id=due.project_id,
        type="tokens.credited",
        now=now,
        customer_pk=due.customer_pk,
        customer_external_id=due.external_id,
        data={
            "customer_id": due.external_id,
            "amount": delta,
            "balance": balance + delta,
            "kind": "replenishment",
        },
    )


DUE = (
    select(
        customers.c.id,
        customers.c.project_id,
        customers.c.external_id,
        customers.c.tier_id,
        customers.c.period_start,
        customers.c.tier_assigned_at,
    )
    .where(
        customers.c.period_end <= bindparam("now"),
        customers.c.tier_id.in_(bindparam("tiers", expanding=True)),
    )
    .order_by(customers.c.period_end)
    .limit(bindparam("batch"))
)


def roll_over_due(engine: Engine, rules: dict[int, TierRules], now: datetime, batch: int = 500) -> int:
    """The scheduler's job: roll over every customer whose period has ended. Returns how many."""
    done = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(DUE, {"now": now, "tiers": list(rules), "batch": batch}).all()
        for row in rows:
            due = Due(
                row.id, row.project_id, row.external_id, row.tier_id, row.period_start, row.tier_assigned_at
            )
            done += roll_over(engine, due, rules[row.tier_id], now, source="scheduler")
        if len(rows) < batch:
            return done
