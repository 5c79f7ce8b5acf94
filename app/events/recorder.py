"""Recording events inside the caller's transaction, with their deliveries (the outbox, SPEC 7.2):
each active subscription of the event's type gets a pending delivery in the same transaction, so an
event recorded while a subscription is active reaches it even if every process dies right after.
The sender (`app.events.delivery`) sends them later, outside any request."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, literal, select

from app.db import UTCDateTime, insert_ignoring_conflict
from app.models.event import EVENT_TYPES, Delivery, Event, Hook, HookEventType

events = cast(Table, Event.__table__)
LITELLM_EVENTS = ("budget.exceeded", "budget.threshold_crossed")
hooks = cast(Table, Hook.__table__)
hook_types = cast(Table, HookEventType.__table__)
deliveries = cast(Table, Delivery.__table__)

# One statement per event, whatever the number of subscriptions (none: an indexed empty read).
_at = bindparam("at", type_=UTCDateTime())
ENQUEUE = deliveries.insert().from_select(
    ["hook_id", "event_id", "status", "attempts", "next_attempt_at", "created_at"],
    select(hook_types.c.hook_id, bindparam("event_id"), literal("pending"), literal(0), _at, _at)
    .join(hooks, hooks.c.id == hook_types.c.hook_id)
    .where(
        hook_types.c.event_type == bindparam("type"),
        hooks.c.project_id == bindparam("project_id"),
        hooks.c.active.is_(True),
    ),
)


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def record(
    conn: Connection,
    *,
    project_id: int,
    type: str,
    now: datetime,
    customer_pk: int | None = None,
    customer_external_id: str | None = None,
    data: dict | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Append one event; with a dedupe_key, only the first of its kind is kept. True if written."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    values = dict(
        public_id=new_event_id(),
        project_id=project_id,
        type=type,
        data=data or {},
        customer_id=customer_pk,
        customer_external_id=customer_external_id,
        dedupe_key=dedupe_key,
        created_at=now,
        # Sent to LiteLLM's webhook when the project has one; the sender drops it otherwise.
        litellm_pending=type in LITELLM_EVENTS,
    )
    if dedupe_key is None:
        event_id = conn.execute(events.insert().values(**values).returning(events.c.id)).scalar()
    else:
        event_id = insert_ignoring_conflict(conn, events, values, ["project_id", "dedupe_key"])
    if event_id is None:
        return False
    conn.execute(ENQUEUE, {"event_id": event_id, "type": type, "project_id": project_id, "at": now})
    return True
