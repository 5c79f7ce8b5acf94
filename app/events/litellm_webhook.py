"""LiteLLM's webhook (SPEC 7.4): `spend_tracked` for each customer call, and `budget_crossed`,
`threshold_crossed` and `soft_budget_crossed` for customers, POSTed as LiteLLM's proxy sends them
(`general_settings.alerting: ["webhook"]` + `WEBHOOK_URL`) to `WEBHOOK_URL` or the project's own
`litellm_webhook_url`.

The outbox rows are the calls' usage records and the budget events themselves, flagged
`litellm_pending` in the transaction that wrote them: nothing is added to a call's path but that
flag. The sender (the Dispatcher, in the scheduler's process) posts them in order, one project at a
time, and clears each flag once its POST got a 2xx: at least once, across restarts. A failing
target is retried with backoff; what it has not taken after GIVE_UP is dropped, with a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, select, update
from urllib3.exceptions import HTTPError

from app.db import write_transaction
from app.metering.pricing import to_nusd, to_usd
from app.models.api_key import ApiKey
from app.models.customer import Customer
from app.models.event import Event
from app.models.project import Project
from app.models.usage import UsageRecord

log = logging.getLogger(__name__)
records = cast(Table, UsageRecord.__table__)
events = cast(Table, Event.__table__)
customers = cast(Table, Customer.__table__)
keys = cast(Table, ApiKey.__table__)
projects = cast(Table, Project.__table__)

BATCH = 100
BACKOFF_S = (5, 30, 120, 600, 1800, 3600)
GIVE_UP = timedelta(hours=25)
NULLS = (
    "max_budget",
    "soft_budget",
    "user_id",
    "team_id",
    "team_alias",
    "user_email",
    "key_alias",
    "projected_exceeded_date",
    "projected_spend",
)


@dataclass(frozen=True)
class Owed:
    """One POST LiteLLM's webhook is owed: a call's spend, or a budget event."""

    table: Table
    row_id: int
    created_at: datetime
    payload: dict


def targets(engine: Engine, default_url: str | None) -> dict[int, str]:
    """Each project's LiteLLM webhook: its own setting, else WEBHOOK_URL; projects with neither
    are left out."""
    with engine.connect() as conn:
        rows = conn.execute(select(projects.c.id, projects.c.litellm_webhook_url)).all()
    return {pk: url for pk, own in rows if (url := own or default_url)}


def drop_unowed(engine: Engine, owed_to: set[int]) -> int:
    """Budget events of projects without a LiteLLM webhook are owed to no one (read first: most
    rounds find none and write nothing)."""
    unowed = (events.c.litellm_pending.is_(True), events.c.project_id.not_in(owed_to or {0}))
    with engine.connect() as conn:
        if conn.execute(select(events.c.id).where(*unowed).limit(1)).first() is None:
            return 0
    with write_transaction(engine) as conn:
        return conn.execute(update(events).where(*unowed).values(litellm_pending=False)).rowcount


def _base(spend_nusd: int, customer_id: str | None, event: str, message: str) -> dict:
    return {
        "spend": float(to_usd(spend_nusd)),
        **dict.fromkeys(NULLS),
        "token": None,
        "customer_id": customer_id,
        "event": event,
        "event_group": "customer",
        "event_message": message,
    }


def spend_tracked(cost_nusd: int, customer_id: str, token: str | None) -> dict:
    """LiteLLM's payload for one call: `spend` is the call's exact cost in USD."""
    body = _base(cost_nusd, customer_id, "spend_tracked", "")
    body["event_message"] = f"Customer spend tracked. Customer={customer_id}, spend={body['spend']}"
    body["token"] = token
    return body


def budget_event(kind: str, customer_id: str | None, data: dict) -> dict:
    """budget.exceeded → budget_crossed; a 85%/95% crossing → threshold_crossed; the soft budget →
    soft_budget_crossed. `spend` is the period's spend so far, as LiteLLM sends it."""
    spend = _nusd(data.get("spend_usd"))
    if kind == "budget.exceeded":
        event, what = "budget_crossed", "Budget Crossed"
    elif "soft_budget_usd" in data:
        event, what = "soft_budget_crossed", "Soft Budget Crossed"
    else:
        event, what = "threshold_crossed", f"{data.get('percent')}% Threshold Crossed"
    body = _base(spend, customer_id, event, "")
    body["max_budget"] = _usd_or_none(data.get("max_budget_usd"))
    body["soft_budget"] = _usd_or_none(data.get("soft_budget_usd"))
    body["event_message"] = f"{what} for customer={customer_id}. Spend={body['spend']}"
    return body


def _nusd(usd: object) -> int:
    return to_nusd(str(usd)) if usd is not None else 0


def _usd_or_none(usd: object) -> float | None:
    return float(to_usd(_nusd(usd))) if usd is not None else None


def owed(engine: Engine, project_id: int, limit: int = BATCH) -> list[Owed]:
    """What the project's webhook is owed, oldest first."""
    with engine.connect() as conn:
        calls = conn.execute(
            select(
                records.c.id,
                records.c.created_at,
                records.c.cost_nusd,
                customers.c.external_id,
                keys.c.key_hash,
            )
            .join(customers, customers.c.id == records.c.customer_id)
            .outerjoin(keys, keys.c.id == records.c.api_key_id)
            .where(records.c.project_id == project_id, records.c.litellm_pending.is_(True))
            .order_by(records.c.id)
            .limit(limit)
        ).all()
        crossings = conn.execute(
            select(
                events.c.id, events.c.created_at, events.c.type, events.c.customer_external_id, events.c.data
            )
            .where(events.c.project_id == project_id, events.c.litellm_pending.is_(True))
            .order_by(events.c.id)
            .limit(limit)
        ).all()
    found = [
        Owed(records, r.id, r.created_at, spend_tracked(r.cost_nusd, r.external_id, r.key_hash))
        for r in calls
    ]
    found += [
        Owed(events, e.id, e.created_at, budget_event(e.type, e.customer_external_id, e.data or {}))
        for e in crossings
    ]
    return sorted(found, key=lambda o: o.created_at)[:limit]


def settle(engine: Engine, owed_row: Owed) -> None:
    """The POST was taken (or given up on): the row is owed no more."""
    table = owed_row.table
    with write_transaction(engine) as conn:
        conn.execute(update(table).where(table.c.id == owed_row.row_id).values(litellm_pending=False))


@dataclass
class Feed:
    """One project's webhook: what failed last, and when to try again."""

    failures: int = 0
    retry_at: datetime | None = None
    last_error: str | None = None


def feed(
    engine: Engine,
    project_id: int,
    url: str,
    state: Feed,
    now: Callable[[], datetime],
    post: Callable[[str, str, dict[str, str]], object],
) -> int:
    """Post what the project's webhook is owed, in order, until it is all taken or the target fails
    (then back off). Returns how many were taken."""
    taken = 0
    for item in owed(engine, project_id):
        error = _send(url, item, post)
        if error is None:
            settle(engine, item)
            state.failures, state.last_error, taken = 0, None, taken + 1
            continue
        state.failures += 1
        state.last_error = error
        state.retry_at = now() + timedelta(seconds=BACKOFF_S[min(state.failures, len(BACKOFF_S)) - 1])
        if now() - item.created_at > GIVE_UP:
            log.warning(
                "LiteLLM webhook %s: dropped a %s owed since %s (%s)",
                url,
                item.payload["event"],
                item.created_at,
                error,
            )
            settle(engine, item)
        break
    return taken


def _send(url: str, item: Owed, post: Callable[[str, str, dict[str, str]], object]) -> str | None:
    """None when the target took it (2xx), else why not."""
    body = json.dumps(item.payload, separators=(",", ":"))
    try:
        answer = post(url, body, {"content-type": "application/json", "user-agent": "Tollgate-Webhooks/1"})
    except (ValueError, HTTPError, OSError) as exc:  # a refused target, the network: retried later
        return f"{type(exc).__name__}: {exc}"[:500]
    status = getattr(answer, "status", 0)
    return None if 200 <= status < 300 else f"HTTP {status}"
