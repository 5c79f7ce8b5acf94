"""Reservation (SPEC 5.1): the atomic hold taken before a metered call is forwarded.

Each function is one short write transaction with no I/O inside, so no greenlet ever yields
while it holds a database lock. Customer state is never cached: these statements decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    func,
    not_,
    or_,
    select,
    update,
)

from app.db import UTCDateTime
from app.metering.shedding import MANUAL, MANUAL_RETRY_AFTER_S, SHED, refusal, sheds
from app.models.customer import Customer
from app.models.ledger import LedgerEntry
from app.models.tier import UsageTier
from app.models.usage import UsageRecord
from app.prepared import Prepared, Raw, statements

customers = cast(Table, Customer.__table__)
tiers = cast(Table, UsageTier.__table__)
ledger = cast(Table, LedgerEntry.__table__)
usage_records = cast(Table, UsageRecord.__table__)

FALLBACK_RESERVE = 1024


class QuotaRefused(Exception):
    """The call may not go ahead; `code` is the SPEC 3.3 error code."""

    def __init__(self, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Ask:
    """What a call wants to reserve."""

    project_id: int
    external_id: str
    prompt_upper: int
    completion_requested: int | None  # the largest limit field times n; None = the tier's default reserve
    now: datetime
    expires_at: datetime
    choices: int = 1  # completions asked for (`n`): hard_cap leaves each at least one token
    auto_level: str = "off"  # the automatic shedding level for this call's model (SPEC 8)
    auto_retry_after: int = 1  # seconds until the next health probe, when that level sheds it


@dataclass(frozen=True)
class Hold:
    """A reservation taken for one call."""

    customer_pk: int
    tier_id: int | None
    tokens: int
    completion_cap: int | None  # the completion limit to send upstream, when hard_cap set one
    capped: bool  # hard_cap applies: the charge never takes the balance below the other holds' need
    available: int  # balance minus every hold, right after this one
    allowed_regions: tuple[str, ...]
    shedding_tier: str
    period_start: datetime | None
    max_budget_nusd: int | None = None  # the customer's own budget, on top of its tier's
    budget_duration: str | None = None  # the own budget's period, from budget_set_at
    budget_set_at: datetime | None = None
    choices: int = 1  # completions asked for: a shrunk completion leaves each at least one token
    expires_at: datetime | None = None  # when the scheduler may release it, unless it is kept


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


# The hot-path statements are built once and compiled once per dialect (app/prepared.py): a call
# only binds its values.
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
            not_(SHED),
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
            customers.c.budget_duration,
            customers.c.budget_set_at,
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
    return Prepared(_hold(need, room))


HOLD_FULL = _full_hold()
HOLD_FIXED = Prepared(
    _hold(bindparam("fixed", type_=BigInteger), _available >= bindparam("fixed", type_=BigInteger))
)
STATE = Prepared(
    select(
        customers.c.id,
        customers.c.blocked,
        customers.c.tier_id,
        customers.c.token_balance,
        _available.label("available"),
        customers.c.period_start,
        customers.c.period_end,
        customers.c.tier_assigned_at,
        customers.c.shedding_tier,
        SHED.label("shed"),
        MANUAL.label("manual_level"),
    ).where(
        customers.c.project_id == bindparam("b_project"), customers.c.external_id == bindparam("b_customer")
    )
)


def _params(ask: Ask, **extra) -> dict:
    return dict(
        b_project=ask.project_id,
        b_customer=ask.external_id,
        expires_at=ask.expires_at,
        now=ask.now,
        auto_level=ask.auto_level,
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
        budget_duration=row.budget_duration,
        budget_set_at=row.budget_set_at,
        choices=ask.choices,
        expires_at=ask.expires_at,
    )


def reserve(engine: Engine, ask: Ask, terms_of) -> Hold | None:
    """Hold tokens for one call, atomically. None when the customer does not exist yet;
    PeriodEnded when its period must roll over first (SPEC 3.2 step 6).

    `terms_of(tier_id)` gives the tier's TierTerms as they stand: from the proxy's snapshot for a
    locked version (it never changes), else read from the database (SPEC 3.5).
    """
    params = _params(ask, prompt=ask.prompt_upper, completion=ask.completion_requested)
    # Each statement below is atomic by itself: the hold is conditional on the room it needs.
    with statements(engine) as conn:
        for _ in range(RETRIES):
            row = conn.first(HOLD_FULL, params)
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


def _shed(ask: Ask, state) -> QuotaRefused:
    manual = sheds(state.manual_level, state.shedding_tier)
    level = state.manual_level if manual else ask.auto_level
    return QuotaRefused(
        "load_shed",
        refusal(state.shedding_tier, level, automatic=not manual),
        retry_after=MANUAL_RETRY_AFTER_S if manual else max(1, ask.auto_retry_after),
    )


RETRIES = 3
KEEP = Prepared(
    update(customers).where(customers.c.id == bindparam("pk")).values(reservation_expires_at=_expiry)
)


def keep(engine: Engine, hold: Hold, until: datetime) -> None:
    """A call still running (a long stream) keeps its hold past its first expiry: the scheduler
    releases a customer's holds only once the latest expiry of its calls has passed."""
    with statements(engine) as conn:
        conn.run(KEEP, {"pk": hold.customer_pk, "expires_at": until})


def _state(conn: Raw, ask: Ask):
    params = {"b_project": ask.project_id, "b_customer": ask.external_id, "auto_level": ask.auto_level}
    return conn.first(STATE, params)


def _hold_what_remains(conn: Raw, ask: Ask, state, terms: TierTerms) -> Hold | None:
    """The full hold did not fit: say why, or with hard_cap hold what is left (SPEC 5.1).

    None means the state changed since the hold was tried (the row was just created, or
    another call settled): the caller tries the full hold again.
    """
    if state.blocked:
        raise QuotaRefused("customer_blocked", f"Customer {ask.external_id} is blocked.")
    if state.shed:
        raise _shed(ask, state)
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
    if not capped or state.available < ask.prompt_upper + ask.choices:
        raise QuotaRefused(
            "insufficient_tokens",
            f"No tokens left for this request: {max(state.available, 0)} available, the prompt alone "
            f"is estimated at up to {ask.prompt_upper}.",
        )
    fixed = int(state.available)
    row = conn.first(HOLD_FIXED, _params(ask, fixed=fixed))
    return _hold_from_row(row, ask, terms, tokens=fixed) if row is not None else None
