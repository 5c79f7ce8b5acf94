"""Reserve, settle, release: the atomic statements behind every metered call (SPEC 5.1, 5.2).

Each function is one short write transaction with no I/O inside, so no greenlet ever yields
while it holds a database lock. Customer state is never cached: these statements decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    update,
)

from app.db import UTCDateTime, statements, write_transaction
from app.metering import allowance
from app.models.customer import Customer
from app.models.ledger import LedgerEntry
from app.models.tier import UsageTier
from app.models.usage import UsageRecord

customers = cast(Table, Customer.__table__)
tiers = cast(Table, UsageTier.__table__)
ledger = cast(Table, LedgerEntry.__table__)
usage_records = cast(Table, UsageRecord.__table__)

FALLBACK_RESERVE = 1024


class QuotaRefused(Exception):
    """The call may not go ahead; `code` is the SPEC 3.3 error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Ask:
    """What a call wants to reserve."""

    project_id: int
    external_id: str
    prompt_upper: int
    completion_requested: int | None  # the client's max_tokens; None = the tier's default reserve
    now: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Hold:
    """A reservation taken for one call."""

    customer_pk: int
    tier_id: int | None
    tokens: int
    completion_cap: int | None  # the completion limit to send upstream, when hard_cap set one
    capped: bool  # hard_cap applies: the charge never exceeds the hold
    available: int  # balance minus every hold, right after this one
    allowed_regions: tuple[str, ...]
    shedding_tier: str
    period_start: datetime | None
    max_budget_nusd: int | None = None  # the customer's own budget, on top of its tier's


class PeriodEnded(Exception):
    """The customer's period is over: roll it over (replenish) before holding anything."""

    def __init__(self, state):
        super().__init__("period ended")
        self.state = state


@dataclass(frozen=True)
class TierTerms:
    """The parts of a tier the reservation needs (from the proxy snapshot)."""

    prepaid: bool = True
    hard_cap: bool = True
    default_reserve_tokens: int = FALLBACK_RESERVE


def _tier_value(column: str, default: object):
    sub = select(tiers.c[column]).where(tiers.c.id == customers.c.tier_id).scalar_subquery()
    return func.coalesce(sub, default)


# The hot-path statements are built once: SQLAlchemy then reuses their memoised cache keys and
# compiled forms, and a call only binds its values.
_available = customers.c.token_balance - customers.c.reserved_tokens
_expiry = case(
    (
        or_(
            customers.c.reservation_expires_at.is_(None),
            customers.c.reservation_expires_at < bindparam("expires_at", type_=UTCDateTime()),
        ),
        bindparam("expires_at", type_=UTCDateTime()),
    ),
    else_=customers.c.reservation_expires_at,
)


def _hold(amount, condition):
    return (
        update(customers)
        .where(
            customers.c.project_id == bindparam("b_project"),
            customers.c.external_id == bindparam("b_customer"),
            customers.c.blocked.is_(False),
            or_(
                customers.c.period_end.is_(None),
                customers.c.period_end > bindparam("now", type_=UTCDateTime()),
            ),
            condition,
        )
        .values(
            reserved_tokens=customers.c.reserved_tokens + amount,
            reservation_expires_at=_expiry,
            last_seen_at=bindparam("now", type_=UTCDateTime()),
        )
        .returning(
            customers.c.id,
            customers.c.tier_id,
            customers.c.token_balance,
            customers.c.reserved_tokens,
            customers.c.allowed_regions,
            customers.c.shedding_tier,
            customers.c.period_start,
            customers.c.max_budget_nusd,
        )
    )


def _full_hold():
    """Hold prompt + completion reserve if the customer's own tier says it may (SPEC 5.1, 3.2.9)."""
    reserve = func.coalesce(
        bindparam("completion", type_=BigInteger), _tier_value("default_reserve_tokens", FALLBACK_RESERVE)
    )
    need = bindparam("prompt", type_=BigInteger) + reserve
    prepaid = _tier_value("prepaid", True)
    hard_cap = _tier_value("hard_cap", True)
    room = or_(not_(prepaid), and_(hard_cap, _available >= need), and_(not_(hard_cap), _available > 0))
    return _hold(need, room)


HOLD_FULL = _full_hold()
HOLD_FIXED = _hold(bindparam("fixed", type_=BigInteger), _available >= bindparam("fixed", type_=BigInteger))
STATE = select(
    customers.c.id,
    customers.c.blocked,
    customers.c.tier_id,
    customers.c.token_balance,
    _available.label("available"),
    customers.c.period_start,
    customers.c.period_end,
    customers.c.tier_assigned_at,
).where(customers.c.project_id == bindparam("b_project"), customers.c.external_id == bindparam("b_customer"))


def _params(ask: Ask, **extra) -> dict:
    return dict(
        b_project=ask.project_id,
        b_customer=ask.external_id,
        expires_at=ask.expires_at,
        now=ask.now,
        **extra,
    )


def _hold_from_row(row, ask: Ask, terms: TierTerms, tokens: int | None = None) -> Hold:
    reserve = ask.completion_requested
    if reserve is None:
        reserve = terms.default_reserve_tokens
    held = tokens if tokens is not None else ask.prompt_upper + reserve
    capped = terms.prepaid and terms.hard_cap
    return Hold(
        customer_pk=row.id,
        tier_id=row.tier_id,
        tokens=held,
        completion_cap=held - ask.prompt_upper if capped else None,
        capped=capped,
        available=row.token_balance - row.reserved_tokens,
        allowed_regions=tuple(row.allowed_regions or ()),
        shedding_tier=row.shedding_tier,
        period_start=row.period_start,
        max_budget_nusd=row.max_budget_nusd,
    )


def reserve(engine: Engine, ask: Ask, terms_of) -> Hold | None:
    """Hold tokens for one call, atomically. None when the customer does not exist yet;
    PeriodEnded when its period must roll over first (SPEC 3.2 step 6).

    `terms_of(tier_id)` gives the tier's TierTerms from the snapshot; tier versions that have
    customers are immutable, so the snapshot and the database agree on them.
    """
    params = _params(ask, prompt=ask.prompt_upper, completion=ask.completion_requested)
    # Each statement below is atomic by itself: the hold is conditional on the room it needs.
    with statements(engine) as conn:
        for _ in range(RETRIES):
            row = conn.execute(HOLD_FULL, params).first()
            if row is not None:
                return _hold_from_row(row, ask, terms_of(row.tier_id))
            state = _state(conn, ask)
            if state is None:
                return None
            hold = _hold_what_remains(conn, ask, state, terms_of(state.tier_id))
            if hold is not None:
                return hold
    raise QuotaRefused(
        "insufficient_tokens",
        f"No tokens could be held for {ask.external_id}: its balance kept changing; try again.",
    )


RETRIES = 3


def _state(conn: Connection, ask: Ask):
    return conn.execute(STATE, {"b_project": ask.project_id, "b_customer": ask.external_id}).first()


def _hold_what_remains(conn: Connection, ask: Ask, state, terms: TierTerms) -> Hold | None:
    """The full hold did not fit: say why, or with hard_cap hold what is left (SPEC 5.1).

    None means the state changed since the hold was tried (the row was just created, or
    another call settled): the caller tries the full hold again.
    """
    if state.blocked:
        raise QuotaRefused("customer_blocked", f"Customer {ask.external_id} is blocked.")
    if state.period_end is not None and state.period_end <= ask.now:
        raise PeriodEnded(state)
    reserve = ask.completion_requested
    full = ask.prompt_upper + (terms.default_reserve_tokens if reserve is None else reserve)
    capped = terms.prepaid and terms.hard_cap
    if not terms.prepaid or (capped and state.available >= full) or (not capped and state.available > 0):
        return None
    if state.token_balance <= 0:
        raise QuotaRefused(
            "insufficient_tokens",
            f"No tokens: customer {ask.external_id} has a balance of {state.token_balance}.",
        )
    if not capped or state.available < ask.prompt_upper + 1:
        raise QuotaRefused(
            "insufficient_tokens",
            f"No tokens left for this request: {max(state.available, 0)} available, the prompt alone "
            f"is estimated at up to {ask.prompt_upper}.",
        )
    fixed = int(state.available)
    row = conn.execute(HOLD_FIXED, _params(ask, fixed=fixed)).first()
    return _hold_from_row(row, ask, terms, tokens=fixed) if row is not None else None


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
