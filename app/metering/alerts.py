"""Balance events after a settlement: `tokens.low` once per crossing of the project's threshold,
`tokens.exhausted` when the balance reaches zero (SPEC 7.1). Extra statements run only on a crossing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, update

from app.db import write_transaction
from app.events import recorder
from app.metering.quota import customers
from app.metering.settlement import Settled


@dataclass(frozen=True)
class Whose:
    project_id: int
    customer_pk: int
    external_id: str


def after_settlement(
    engine: Engine, whose: Whose, settled: Settled, threshold: int | None, now: datetime
) -> None:
    exhausted = settled.balance <= 0 < settled.balance + settled.charged
    low = threshold is not None and settled.balance < threshold and not settled.low_notified
    recovered = settled.low_notified and (threshold is None or settled.balance >= threshold)
    if not (exhausted or low or recovered):
        return
    with write_transaction(engine) as conn:
        if low and _flag(conn, whose, True):
            _event(conn, whose, "tokens.low", settled, now, threshold=threshold)
        if recovered:
            # A credit lifted the balance back over the threshold: the next fall is a new crossing.
            _flag(conn, whose, False)
        if exhausted:
            _event(conn, whose, "tokens.exhausted", settled, now)


def _flag(conn, whose: Whose, value: bool) -> bool:
    """Set the low-balance flag; True only for the call that changed it (one event per crossing)."""
    changed = conn.execute(
        update(customers)
        .where(customers.c.id == whose.customer_pk, customers.c.low_balance_notified.is_(not value))
        .values(low_balance_notified=value)
    )
    return changed.rowcount == 1


def _event(conn, whose: Whose, kind: str, settled: Settled, now: datetime, **extra) -> None:
    recorder.record(
        conn,
        project_id=whose.project_id,
        type=kind,
        now=now,
        customer_pk=whose.customer_pk,
        customer_external_id=whose.external_id,
        data={"customer_id": whose.external_id, "token_balance": settled.balance, **extra},
    )
