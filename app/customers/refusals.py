"""A customer's refused calls (SPEC 5.5): its last refusal and its counts per hour and code, each
with its latest example, the last 7 days, newest first; and the customers refused lately, for the
customers list. The proxy's refusal counters write them within seconds; they are kept longer than
a customer's page shows them, for the dashboard's ranges and their trends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import ColumnElement, Engine, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from app.db import write_transaction
from app.models.customer import Customer
from app.models.usage import RefusalCount

WINDOW = timedelta(days=7)  # what a customer's Requests tab and GET …/refusals show (SPEC 6)
# How long counts are kept: the dashboard's longest range (30 days) and the previous period its
# trend compares with, from the first day's midnight; a test checks every range fits.
KEPT = timedelta(days=61)
RECENT = timedelta(hours=24)  # "refused in the last 24 h" of the customers list


class RefusalHour(NamedTuple):
    """One row of counts: refusals of one code in one UTC hour, and the latest of them."""

    hour: datetime
    code: str
    count: int
    last_at: datetime | None  # None on rows counted before examples were kept
    message: str | None
    model: str | None

    @property
    def at(self) -> datetime:
        """When to show the row among calls: its latest refusal (an old row without one: its hour)."""
        return self.last_at or self.hour


@dataclass(frozen=True)
class Refusals:
    last: dict | None  # {"at", "code", "message", "model"}
    hours: list[RefusalHour]  # newest hour first


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _rows():
    return select(
        RefusalCount.hour,
        RefusalCount.code,
        RefusalCount.count,
        RefusalCount.last_at,
        RefusalCount.message,
        RefusalCount.model,
    )


def refusals_of(session: Session, customer: Customer, now: datetime) -> Refusals:
    rows = session.execute(
        _rows()
        .where(RefusalCount.customer_id == customer.id, RefusalCount.hour >= _hour_of(now - WINDOW))
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
    return Refusals(last, [RefusalHour(*row) for row in rows])


def refusals_between(
    session: Session, customer: Customer, since: datetime | None, until: ColumnElement | None, now: datetime
) -> list[RefusalHour]:
    """The customer's counts of the last 7 days shown at a time in [since, until), newest first.

    `until` is an SQL expression (the time of the served call a page starts after) so that a page
    of the Requests tab costs one statement for its refusals; None, or an expression that is NULL
    (no such call): no upper bound.
    """
    shown_at = func.coalesce(RefusalCount.last_at, RefusalCount.hour)
    stmt = _rows().where(RefusalCount.customer_id == customer.id, RefusalCount.hour >= _hour_of(now - WINDOW))
    if since is not None:
        stmt = stmt.where(shown_at >= since)
    if until is not None:
        stmt = stmt.where(or_(until.is_(None), shown_at < until))
    rows = session.execute(stmt.order_by(shown_at.desc(), RefusalCount.code)).all()
    return [RefusalHour(*row) for row in rows]


def counts_by_code(session: Session, customer: Customer, now: datetime) -> list[tuple[str, int]]:
    """The customer's refusals of the last 7 days per code, most first."""
    total = func.sum(RefusalCount.count)
    return [
        (code, int(n))  # PostgreSQL sums BIGINT into NUMERIC
        for code, n in session.execute(
            select(RefusalCount.code, total)
            .where(RefusalCount.customer_id == customer.id, RefusalCount.hour >= _hour_of(now - WINDOW))
            .group_by(RefusalCount.code)
            .order_by(total.desc(), RefusalCount.code)
        )
    ]


def _recent(now: datetime) -> ColumnElement[bool]:
    """Counts of the customer in the list's row whose latest refusal is within the last 24 h (the
    hour bound lets the database use its index on the hour)."""
    since = now - RECENT
    return and_(
        RefusalCount.customer_id == Customer.id,
        RefusalCount.hour >= _hour_of(since),
        func.coalesce(RefusalCount.last_at, RefusalCount.hour) >= since,
    )


def refused_lately(now: datetime) -> ColumnElement[bool]:
    """Whether the customer of the row was refused at least once in the last 24 h."""
    return select(RefusalCount.id).where(_recent(now)).exists()


def refusals_lately(now: datetime) -> ColumnElement[int]:
    """How many refusals the customer of the row had in the last 24 h (0 for none), to the hour:
    an hour's count is taken whole when its latest refusal is within the 24 h."""
    return func.coalesce(select(func.sum(RefusalCount.count)).where(_recent(now)).scalar_subquery(), 0)


def forget_old_refusals(engine: Engine, now: datetime) -> int:
    """Retention: counts older than KEPT (and an hour, for the hour it began in) go."""
    with write_transaction(engine) as conn:
        cutoff = now - KEPT - timedelta(hours=1)
        return conn.execute(delete(RefusalCount).where(RefusalCount.hour < cutoff)).rowcount
