"""Recording events inside the caller's transaction (delivery happens later, from the outbox)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table

from app.db import insert_ignoring_conflict
from app.models.event import EVENT_TYPES, Event

events = cast(Table, Event.__table__)


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
    )
    if dedupe_key is None:
        conn.execute(events.insert().values(**values))
        return True
    return insert_ignoring_conflict(conn, events, values, ["project_id", "dedupe_key"]) is not None
