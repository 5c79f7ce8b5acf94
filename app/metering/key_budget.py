"""A key's own $ budget (LiteLLM's virtual-key max_budget + budget_duration, SPEC 6.1).

Counted exactly like a tier's budget (SPEC 5.1): before a call is forwarded, its estimated cost is
reserved on the key's row under a row lock, against what the key's current window has spent and
what its other calls in flight hold; settlement turns the reservation into spend. The amount and
the window are read in that transaction, so a change applies to the next call. With hard_cap the
last call that fits is shortened to what the budget still pays for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, Connection, Engine, Table, bindparam, case, or_, select, update

from app.db import UTCDateTime, write_transaction
from app.metering.allowance import affordable, own_budget_start
from app.metering.pricing import usd_str
from app.models.api_key import ApiKey

keys = cast(Table, ApiKey.__table__)


class KeyBudgetExceeded(Exception):
    def __init__(self, spent_nusd: int, budget_nusd: int, held_nusd: int):
        # LiteLLM's wording first, so clients migrating from it recognise the refusal; then why a
        # spend below the budget can refuse: the call is held at its estimated cost before it runs.
        spent, budget, held = usd_str(spent_nusd), usd_str(budget_nusd), usd_str(held_nusd)
        super().__init__(
            f"Budget has been exceeded! Current cost: {spent}, Max budget: {budget}. "
            f"Calls in flight hold {held}; what is left does not cover this call's estimated cost."
        )


@dataclass(frozen=True)
class KeyHold:
    """What one call holds of its key's budget."""

    key_id: int
    nusd: int
    window_start: datetime
    completion_cap: int | None  # with hard_cap: the completion the hold pays for
    expires_at: datetime


def reserve(
    engine: Engine,
    key_id: int,
    completion: int,
    cost_of: Callable[[int], int],
    hard_cap: bool,
    choices: int,
    now: datetime,
    expires_at: datetime,
) -> KeyHold | None:
    """Hold the call's cost (prompt + `completion`, priced by `cost_of`) on the key's budget.

    None when the key has no budget (any longer). KeyBudgetExceeded when not even the smallest call
    fits (one completion token per choice, with hard_cap; the whole call without)."""
    with write_transaction(engine) as conn:
        # Lock the row first, with a write: a row lock on PostgreSQL, and on SQLite the database's
        # write lock before the read, so two processes cannot both read and then both write.
        conn.execute(update(keys).where(keys.c.id == key_id).values(reserved_nusd=keys.c.reserved_nusd))
        row = conn.execute(select(keys).where(keys.c.id == key_id)).first()
        if row is None or row.max_budget_nusd is None:
            return None
        start, spent = window_spend(row, now)
        room = row.max_budget_nusd - spent - row.reserved_nusd
        if cost_of(completion) > room:
            fits = affordable(room, completion, cost_of) if hard_cap else 0
            if fits < choices:
                raise KeyBudgetExceeded(spent, row.max_budget_nusd, row.reserved_nusd)
            completion = fits
        held = cost_of(completion)
        conn.execute(
            update(keys)
            .where(keys.c.id == key_id)
            .values(
                budget_start=start,
                budget_spend_nusd=spent,
                reserved_nusd=keys.c.reserved_nusd + held,
                reservation_expires_at=_later(expires_at),
            )
        )
    # hard_cap: the upstream may not write more than the hold pays for, shortened or not.
    return KeyHold(key_id, held, start, completion if hard_cap else None, expires_at)


def window_spend(key, now: datetime) -> tuple[datetime, int]:
    """The start of the key's current budget window and what it has spent (a new window: 0)."""
    start = own_budget_start(key.budget_duration, key.budget_set_at or key.created_at, now)
    return start, key.budget_spend_nusd if key.budget_start == start else 0


def _later(expires_at: datetime):
    return case(
        (
            or_(keys.c.reservation_expires_at.is_(None), keys.c.reservation_expires_at < expires_at),
            expires_at,
        ),
        else_=keys.c.reservation_expires_at,
    )


_held = bindparam("held", type_=BigInteger)
_down = case((keys.c.reserved_nusd >= _held, keys.c.reserved_nusd - _held), else_=0)
SETTLE = (
    update(keys)
    .where(keys.c.id == bindparam("key_id"))
    .values(
        reserved_nusd=_down,
        # A call counts in the window it was admitted in: when that window has ended meanwhile,
        # the next call's reservation already started the new one at 0.
        budget_spend_nusd=case(
            (
                keys.c.budget_start == bindparam("start", type_=UTCDateTime()),
                keys.c.budget_spend_nusd + bindparam("cost", type_=BigInteger),
            ),
            else_=keys.c.budget_spend_nusd,
        ),
    )
)


def settle(conn: Connection, hold: KeyHold, cost_nusd: int) -> None:
    """Turn the hold into spend (inside the settlement's transaction); cost 0 gives it back."""
    conn.execute(
        SETTLE, {"key_id": hold.key_id, "held": hold.nusd, "start": hold.window_start, "cost": cost_nusd}
    )


def keep(engine: Engine, hold: KeyHold, until: datetime) -> None:
    """A long stream keeps its hold past its first expiry (as a customer's, quota.keep)."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(keys).where(keys.c.id == hold.key_id).values(reservation_expires_at=_later(until))
        )


def release_expired(conn: Connection, now: datetime) -> int:
    """Free the holds of keys whose calls' processes died: once the latest expiry of a key's
    calls has passed, none of them is still in flight."""
    return conn.execute(
        update(keys)
        .where(keys.c.reservation_expires_at < now, keys.c.reserved_nusd != 0)
        .values(reserved_nusd=0, reservation_expires_at=None)
    ).rowcount
