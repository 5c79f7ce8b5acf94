"""A customer's Requests tab: its served calls and its refused ones in one list, newest first.

Served calls are paged by id (`?before=<id>`, 100 a page). Refusals are counted per UTC hour and
code (SPEC 5.5); each count is one line, shown at its latest refusal, on the page whose time range
holds that moment: from the oldest call of the page (the beginning of time on the last page) to
the call the page starts after (no end on the first page). Every line is on exactly one page, and
a page costs one statement more than its calls.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.customers.refusals import RefusalHour, refusals_between
from app.models.customer import Customer
from app.models.usage import UsageRecord


@dataclass(frozen=True)
class Line:
    at: datetime
    call: UsageRecord | None = None
    refused: RefusalHour | None = None


def interleave(
    session: Session,
    customer: Customer,
    calls: list[UsageRecord],
    before: int | None,
    older: int | None,
    now: datetime,
) -> list[Line]:
    """The page's calls (newest first, after call `before`; `older` set when more follow) with the
    refusals that fall in its time range."""
    since = calls[-1].created_at if older is not None and calls else None
    until = None
    if before is not None:  # the oldest call from `before` on: a link to a call since deleted still pages
        until = (
            select(func.min(UsageRecord.created_at))
            .where(UsageRecord.customer_id == customer.id, UsageRecord.id >= before)
            .scalar_subquery()
        )
    refused = refusals_between(session, customer, since, until, now)
    return list(
        heapq.merge(
            (Line(call.created_at, call=call) for call in calls),
            (Line(row.at, refused=row) for row in refused),
            key=lambda line: line.at,
            reverse=True,
        )
    )
