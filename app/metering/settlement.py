"""Settlement (SPEC 5.2): after the call, release the hold, debit the upstream's usage and write
the usage record in one statement or one short transaction; release holds that were not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Connection, Engine, bindparam, case, literal_column, select, true, update

from app.db import statements, write_transaction
from app.metering import allowance
from app.metering.quota import Hold, customers, usage_records


@dataclass(frozen=True)
class Charge:
    """What one served call costs, from the upstream's usage (or the estimate on a hang-up)."""

    prompt_tokens: int
    completion_tokens: int
    cost_nusd: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Settled:
    """The customer right after settlement."""

    available: int  # balance minus holds still in flight
    balance: int
    charged: int
    low_notified: bool


def settle(
    engine: Engine, hold: Hold | None, charge: Charge, record: dict, share: allowance.Share | None = None
) -> Settled | None:
    """Release the hold (and the period share), debit the usage and write the usage record, atomically.

    Returns the customer as it stands afterwards (None for project-level calls).
    """
    charged = charge.total_tokens
    if hold is not None and hold.capped:
        # hard_cap: the balance is a hard ceiling; a prompt estimate that fell short is absorbed.
        charged = min(charged, hold.tokens)
    params = dict(
        record,
        pk=hold.customer_pk if hold is not None else None,
        held=hold.tokens if hold is not None else 0,
        charged=charged if hold is not None else 0,
        cost=charge.cost_nusd,
        prompt_tokens=charge.prompt_tokens,
        completion_tokens=charge.completion_tokens,
        total_tokens=charge.total_tokens,
        cost_nusd=charge.cost_nusd,
    )
    if share is None and engine.dialect.name == "postgresql":
        with statements(engine) as conn:
            only = {f"v_{name}": value for name, value in _usage_values(params).items()}
            only.update((name, params[name]) for name in ("pk", "held", "charged", "cost"))
            row = conn.execute(SETTLE_AND_RECORD, only).one()
            return (
                None if row.available is None else Settled(row.available, row.balance, charged, row.notified)
            )
    with write_transaction(engine) as conn:
        available = _settle_then_record(conn, params)
        if share is not None and charge.total_tokens + charge.cost_nusd > 0:
            counted = charged if hold is not None and hold.capped else charge.total_tokens
            standings = allowance.use(conn, share, counted, charge.cost_nusd)
            allowance.announce(conn, share, standings, record["created_at"])
        elif share is not None:
            allowance.give_back(conn, share)
        return available


def _settle_then_record(conn: Connection, params: dict) -> Settled | None:
    available = None
    row = conn.execute(SETTLE, params).first() if params["pk"] is not None else None
    if row is None:  # a project-level call, or the customer was deleted while its call was in flight
        params = dict(params, pk=None, charged=0)
    else:
        available = Settled(
            row.token_balance - row.reserved_tokens,
            row.token_balance,
            params["charged"],
            row.low_balance_notified,
        )
    conn.execute(
        INSERT_USAGE, dict(_usage_values(params), customer_id=params["pk"], tokens_charged=params["charged"])
    )
    return available


def _usage_values(params: dict) -> dict:
    return {name: params[name] for name in USAGE_FIELDS}


# Never below zero: the scheduler may already have released an expired hold.
_released = case(
    (customers.c.reserved_tokens >= bindparam("held"), customers.c.reserved_tokens - bindparam("held")),
    else_=0,
)
SETTLE = (
    update(customers)
    .where(customers.c.id == bindparam("pk"))
    .values(
        token_balance=customers.c.token_balance - bindparam("charged", type_=BigInteger),
        reserved_tokens=_released,
        spend_nusd=customers.c.spend_nusd + bindparam("cost", type_=BigInteger),
    )
    .returning(customers.c.token_balance, customers.c.reserved_tokens, customers.c.low_balance_notified)
)
RELEASE = update(customers).where(customers.c.id == bindparam("pk")).values(reserved_tokens=_released)
INSERT_USAGE = usage_records.insert()

# What a call's record carries besides its customer and charge (relay.Call.record gives them).
USAGE_FIELDS = (
    "request_id",
    "project_id",
    "endpoint",
    "model_requested",
    "model_served",
    "model_tier",
    "deployment_id",
    "region",
    "status",
    "stream",
    "client_disconnected",
    "overage",
    "restricted_from",
    "latency_ms",
    "created_at",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_nusd",
)


def _settle_and_record():
    """PostgreSQL: settlement and usage record as one statement, one round trip, atomic."""
    settled = SETTLE.returning(
        customers.c.id, (customers.c.token_balance - customers.c.reserved_tokens).label("available")
    ).cte("settled")
    after = [
        select(settled.c.available).scalar_subquery().label("available"),
        select(settled.c.token_balance).scalar_subquery().label("balance"),
        select(settled.c.low_balance_notified).scalar_subquery().label("notified"),
    ]
    one = select(literal_column("1").label("one")).subquery("one")
    charged = case((settled.c.id.is_(None), 0), else_=bindparam("charged", type_=BigInteger))
    # Named apart from the columns: execution parameters named like columns would be taken as VALUES.
    values = [bindparam(f"v_{name}", type_=usage_records.c[name].type) for name in USAGE_FIELDS]
    source = select(*values, settled.c.id, charged).select_from(one.outerjoin(settled, true()))
    return (
        usage_records.insert()
        .from_select([*USAGE_FIELDS, "customer_id", "tokens_charged"], source)
        .returning(*after)
        .add_cte(settled, nest_here=True)
    )


SETTLE_AND_RECORD = _settle_and_record()


def release(engine: Engine, hold: Hold, share: allowance.Share | None = None) -> None:
    """Give a hold (and its period share) back untouched: nothing was served."""
    with statements(engine) if share is None else write_transaction(engine) as conn:
        conn.execute(RELEASE, {"pk": hold.customer_pk, "held": hold.tokens})
        if share is not None:
            allowance.give_back(conn, share)


def release_expired(engine: Engine, now: datetime) -> int:
    """The scheduler's job: free the holds of calls whose process died (SPEC 5.1).

    A customer's expiry is the latest of its holds', so when it has passed no call of that
    customer is still in flight: every hold and period share it has is stale.
    """
    stale = select(customers.c.id).where(
        customers.c.reservation_expires_at < now, customers.c.reserved_tokens != 0
    )
    with write_transaction(engine) as conn:
        conn.execute(
            update(allowance.counters)
            .where(allowance.counters.c.customer_id.in_(stale))
            .values(reserved_calls=0, reserved_tokens=0, reserved_nusd=0)
        )
        freed = conn.execute(
            update(customers)
            .where(customers.c.id.in_(stale))
            .values(reserved_tokens=0, reserved_nusd=0, reservation_expires_at=None)
        )
    return freed.rowcount
