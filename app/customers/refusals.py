"""A customer's refused calls (SPEC 5.5): its last refusal and its counts per hour and code, the
last 7 days, newest first. The proxy's refusal counters write them within seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from app.db import write_transaction
from app.models.customer import Customer
from app.models.usage import RefusalCount

WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Refusals:
    last: dict | None  # {"at", "code", "message", "model"}
    hours: list[tuple[datetime, str, int]]  # (hour, code, count), newest first


def refusals_of(session: Session, customer: Customer, now: datetime) -> Refusals:
    since = (now - WINDOW).replace(minute=0, second=0, microsecond=0)
    rows = session.execute(
        select(RefusalCount.hour, RefusalCount.code, RefusalCount.count)
        .where(RefusalCount.customer_id == customer.id, RefusalCount.hour >= since)
        .order_by(RefusalCount.hour.desc(), RefusalCount.code)
    ).all()
    last = None
    if customer.last_refusal_at is not None:
        last = {
            "at": customer.last_refusal_at,
            "code": customer.last_refusal_code,
            "message": customer.last_refusal_message,
            "model": customer.last_refusal_model,
        }
    return Refusals(last, [(row.hour, row.code, row.count) for row in rows])


def forget_old_refusals(engine: Engine, now: datetime) -> int:
    """Retention: counts older than the window (and an hour, for the hour it began in) go."""
    with write_transaction(engine) as conn:
        cutoff = now - WINDOW - timedelta(hours=1)
        return conn.execute(delete(RefusalCount).where(RefusalCount.hour < cutoff)).rowcount
