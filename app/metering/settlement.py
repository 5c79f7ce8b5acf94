"""Settlement (SPEC 5.2): after the call, release the hold, debit the upstream's usage and write
the usage record in one statement or one short transaction; release holds that were not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Integer,
    bindparam,
    case,
    literal_column,
    not_,
    or_,
    select,
    true,
    update,
)

from app.db import write_transaction
from app.metering import allowance, key_budget
from app.metering.key_budget import KeyHold
from app.metering.quota import Hold, customers, usage_records
from app.prepared import Prepared, Raw, statements


@dataclass(frozen=True)
class Charge:
    """What one served call costs, from the upstream's usage (or the estimate on a hang-up)."""

    prompt_tokens: int  # every input token, cache reads and writes included
    completion_tokens: int
    cost_nusd: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # five-minute and one-hour writes

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
    engine: Engine,
    hold: Hold | None,
    charge: Charge,
    record: dict,
    share: allowance.Share | None = None,
    key_hold: KeyHold | None = None,
) -> Settled | None:
    """Release the hold (and the period share), debit the usage and write the usage record, atomically.

    The upstream's usage is debited in full, except that a prepaid hard-capped balance never goes
    below what the customer's other calls in flight hold: what the balance cannot pay is recorded
    as `tokens_unbilled` (SPEC 5.2). Returns the customer as it stands afterwards (None for
    project-level calls). A key's budget hold (`key_hold`) becomes its spend in the same transaction.
    """
    params = dict(
        {"api_key_id": None, "litellm_pending": False},  # records made outside the proxy (tests, tools)
        **record,
        pk=hold.customer_pk if hold is not None else None,
        held=hold.tokens if hold is not None else 0,
        capped=hold is not None and hold.capped,
        charged=charge.total_tokens if hold is not None else 0,
        unbilled=0,
        cost=charge.cost_nusd,
        prompt_tokens=charge.prompt_tokens,
        completion_tokens=charge.completion_tokens,
        total_tokens=charge.total_tokens,
        cost_nusd=charge.cost_nusd,
        cache_read_tokens=charge.cache_read_tokens,
        cache_write_tokens=charge.cache_write_tokens,
    )
    if share is None and key_hold is None:
        with statements(engine) as conn:
            if conn.dialect.name == "sqlite":  # one transaction, under the writers' lock
                return _settle_then_record(conn, params)
            row = conn.first(SETTLE_AND_RECORD, _one_statement(params))
        if row is not None:  # else the transaction path below settles
            return (
                Settled(row.available, row.balance, params["charged"], row.notified)
                if row.available is not None
                else None
            )
    with write_transaction(engine) as conn:
        available = _settle_then_record(Raw.within(conn), params)
        if share is not None and charge.total_tokens + charge.cost_nusd > 0:
            standings = allowance.use(conn, share, params["charged"], charge.cost_nusd)
            allowance.announce(conn, share, standings, record["created_at"])
        elif share is not None:
            allowance.give_back(conn, share)
        if key_hold is not None:
            key_budget.settle(conn, key_hold, charge.cost_nusd)
        return available


def _one_statement(params: dict) -> dict:
    only = {f"v_{name}": value for name, value in _usage_values(params).items()}
    only.update((name, params[name]) for name in ("pk", "held", "capped", "charged", "unbilled", "cost"))
    return only


def _settle_then_record(conn: Raw, params: dict) -> Settled | None:
    """Settle and record in the caller's transaction; updates params to what was charged."""
    row = conn.first(SETTLE, params) if params["pk"] is not None else None
    if row is None and params["pk"] is not None:
        # The usage passed what the balance may pay (or the customer was deleted meanwhile).
        params.update(_billable(conn, params))
        row = conn.first(SETTLE, params) if params["pk"] is not None else None
    available = None
    if row is not None:
        available = Settled(
            row.token_balance - row.reserved_tokens,
            row.token_balance,
            params["charged"],
            row.low_balance_notified,
        )
    conn.run(INSERT_USAGE, dict(_usage_values(params), customer_id=params["pk"]))
    return available


def _billable(conn: Raw, params: dict) -> dict:
    """What a prepaid hard-capped customer can pay for this call: the balance down to what its
    other calls in flight hold, never below 0; the rest is unbilled. Locks the row until commit."""
    row = conn.first(BILLABLE, params)
    if row is None:  # the customer was deleted while its call was in flight: served, paid by no one
        return {"pk": None, "charged": 0, "unbilled": params["total_tokens"]}
    charged = min(params["total_tokens"], max(0, row.token_balance - row.others))
    # Decided under the row lock: the settlement that follows applies it as it is.
    return {"charged": charged, "unbilled": params["total_tokens"] - charged, "capped": False}


def _usage_values(params: dict) -> dict:
    values = {name: params[name] for name in USAGE_FIELDS}
    values.update(tokens_charged=params["charged"], tokens_unbilled=params["unbilled"])
    return values


# What the customer's other calls hold once this one's hold is released. Never below zero: the
# scheduler may already have released an expired hold.
_others = case(
    (customers.c.reserved_tokens >= bindparam("held"), customers.c.reserved_tokens - bindparam("held")),
    else_=0,
)
_charged = bindparam("charged", type_=BigInteger)
_SETTLE = (
    update(customers)
    .where(
        customers.c.id == bindparam("pk"),
        # hard_cap: the charge must leave the other holds covered; when it would not, no row
        # matches and the caller charges what can be paid (_billable).
        or_(not_(bindparam("capped", type_=Boolean)), customers.c.token_balance - _others >= _charged),
    )
    .values(
        token_balance=customers.c.token_balance - _charged,
        reserved_tokens=_others,
        spend_nusd=customers.c.spend_nusd + bindparam("cost", type_=BigInteger),
        tokens_unbilled=customers.c.tokens_unbilled + bindparam("unbilled", type_=BigInteger),
    )
    .returning(customers.c.token_balance, customers.c.reserved_tokens, customers.c.low_balance_notified)
)
SETTLE = Prepared(_SETTLE)
BILLABLE = Prepared(
    select(customers.c.token_balance, _others.label("others"))
    .where(customers.c.id == bindparam("pk"))
    .with_for_update()
)
RELEASE = Prepared(update(customers).where(customers.c.id == bindparam("pk")).values(reserved_tokens=_others))

# What a call's record carries besides its customer and charge (relay.Call.record gives them).
USAGE_FIELDS = (
    "request_id",
    "project_id",
    "api_key_id",
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
    "litellm_pending",
    "created_at",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_nusd",
    "cache_read_tokens",
    "cache_write_tokens",
)
RECORDED = (*USAGE_FIELDS, "tokens_charged", "tokens_unbilled")
# Every column named: a prepared statement fills in no defaults (created_at comes with the record).
INSERT_USAGE = Prepared(
    usage_records.insert()
    .values({name: bindparam(name, type_=usage_records.c[name].type) for name in (*RECORDED, "customer_id")})
    .inline()  # nothing to read back: no RETURNING of the new row's id
)


def _settle_and_record():
    """PostgreSQL: settlement and usage record as one statement, one round trip, atomic.

    It writes nothing and returns no row when the customer is gone or the charge passes what a
    hard-capped balance may pay: then settle() takes the transaction path, which handles both.
    Project-level calls (no customer) are recorded as they are.
    """
    settled = _SETTLE.returning(
        customers.c.id, (customers.c.token_balance - customers.c.reserved_tokens).label("available")
    ).cte("settled")
    after = [
        select(settled.c.available).scalar_subquery().label("available"),
        select(settled.c.token_balance).scalar_subquery().label("balance"),
        select(settled.c.low_balance_notified).scalar_subquery().label("notified"),
    ]
    one = select(literal_column("1").label("one")).subquery("one")
    # Named apart from the columns: execution parameters named like columns would be taken as VALUES.
    values = [bindparam(f"v_{name}", type_=usage_records.c[name].type) for name in RECORDED]
    source = (
        select(*values, settled.c.id)
        .select_from(one.outerjoin(settled, true()))
        .where(or_(settled.c.id.is_not(None), bindparam("pk", type_=Integer).is_(None)))
    )
    return (
        usage_records.insert()
        .from_select([*RECORDED, "customer_id"], source)
        .returning(*after)
        .add_cte(settled, nest_here=True)
    )


SETTLE_AND_RECORD = Prepared(_settle_and_record())


def release(
    engine: Engine,
    hold: Hold | None,
    share: allowance.Share | None = None,
    key_hold: KeyHold | None = None,
) -> None:
    """Give a hold (and its period share, and its key's budget hold) back untouched: nothing was served."""
    if share is None and key_hold is None:
        if hold is not None:
            with statements(engine) as conn:
                conn.run(RELEASE, {"pk": hold.customer_pk, "held": hold.tokens})
        return
    with write_transaction(engine) as conn:
        if hold is not None:
            Raw.within(conn).run(RELEASE, {"pk": hold.customer_pk, "held": hold.tokens})
        if share is not None:
            allowance.give_back(conn, share)
        if key_hold is not None:
            key_budget.settle(conn, key_hold, 0)


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
        keys = key_budget.release_expired(conn, now)
    return freed.rowcount + keys
