"""The dashboard's headline numbers and their trends against the previous period (README: "The
dashboard's headline numbers" defines each).

Two statements whatever the number of customers or usage records: one sums the usage of the span
and of the previous period side by side (conditional aggregates), one counts the customers.
Refusals come with their chart (figures.refusals).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, case, exists, false, func, select
from sqlalchemy.orm import Session

from app.customers.operations import awaiting_approval
from app.dashboard.figures import Span
from app.models.customer import Customer
from app.models.event import Event
from app.models.project import Project
from app.models.usage import UsageRecord


@dataclass(frozen=True)
class Compared:
    """A figure over the span and over the previous period."""

    current: int
    previous: int


@dataclass(frozen=True)
class UsageTotals:
    calls: Compared
    spend_nusd: Compared
    active_customers: Compared


@dataclass(frozen=True)
class CustomerCounts:
    awaiting: int  # awaiting approval now
    awaiting_new: int  # of those, created in the span
    low: int | None  # balance under the project's low-balance threshold now; None: no threshold
    low_new: int | None  # of those, the ones that crossed it (event tokens.low) in the span


def _during(moment: SQLColumnExpression[datetime], start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(moment >= start, moment < end)


def usage_totals(session: Session, project_id: int, span: Span, now: datetime) -> UsageTotals:
    """Served calls, spend and distinct customers served, in the span and in the previous period."""
    start, end = span.start(now), span.end(now)
    before_start, before_end = span.previous(now)
    when = UsageRecord.created_at
    figures = []
    for period in (_during(when, start, end), _during(when, before_start, before_end)):
        figures += [
            func.count(case((period, 1))),
            func.coalesce(func.sum(case((period, UsageRecord.cost_nusd))), 0),
            func.count(case((period, UsageRecord.customer_id)).distinct()),
        ]
    row = session.execute(
        select(*figures).where(
            UsageRecord.project_id == project_id,
            UsageRecord.status == 200,
            when >= before_start,
            when < end,
        )
    ).one()
    calls, spend, active, calls_before, spend_before, active_before = (int(v) for v in row)
    return UsageTotals(
        Compared(calls, calls_before), Compared(spend, spend_before), Compared(active, active_before)
    )


def customer_counts(session: Session, project: Project, span: Span, now: datetime) -> CustomerCounts:
    """Customers awaiting approval and under the low-balance threshold now (the same conditions as
    the customer list's `awaiting=1` and `low=1`), and how many of each are new in the span."""
    start, end = span.start(now), span.end(now)
    waiting = awaiting_approval()
    threshold = project.low_balance_tokens
    low = Customer.token_balance < threshold if threshold is not None else false()
    ran_low = exists().where(
        Event.customer_id == Customer.id, Event.type == "tokens.low", _during(Event.created_at, start, end)
    )
    row = session.execute(
        select(
            func.count(case((waiting, 1))),
            func.count(case((and_(waiting, _during(Customer.created_at, start, end)), 1))),
            func.count(case((low, 1))),
            func.count(case((and_(low, ran_low), 1))),
        ).where(Customer.project_id == project.id)
    ).one()
    awaiting, awaiting_new, low_now, low_new = (int(v) for v in row)
    if threshold is None:
        return CustomerCounts(awaiting, awaiting_new, None, None)
    return CustomerCounts(awaiting, awaiting_new, low_now, low_new)


@dataclass(frozen=True)
class Trend:
    """A figure's change against the previous period, in words: "▲ 12%" "vs previous 24 h"."""

    tone: str  # good, bad or flat: the colour
    arrow: str  # ▲, ▼ or nothing
    direction: str  # up or down for a screen reader (the arrow is hidden from it); or nothing
    change: str  # 12%, <1%, new, no change; or nothing
    against: str  # what it is compared with


def _percent(current: int, previous: int) -> str:
    """The change in whole percent, rounded half up; under 1% reads "<1%" rather than "0%"."""
    whole, rest = divmod(abs(current - previous) * 100, previous)
    whole += 1 if 2 * rest >= previous else 0
    return f"{whole:,}%" if whole else "<1%"


def trend(figure: Compared, span: Span, up_is_good: bool = True) -> Trend:
    """Up or down in percent; "new" when the previous period had none; no arrow when both had none."""
    period = f"previous {span.length_words}"
    current, previous = figure.current, figure.previous
    if current == previous:
        if current == 0:
            return Trend("flat", "", "", "", f"none in the {period} either")
        return Trend("flat", "", "", "no change", f"vs {period}")
    up = current > previous
    tone = "good" if up == up_is_good else "bad"
    arrow, direction = ("▲", "up") if up else ("▼", "down")
    if previous == 0:
        return Trend(tone, arrow, direction, "new", f"none in the {period}")
    return Trend(tone, arrow, direction, _percent(current, previous), f"vs {period}")
