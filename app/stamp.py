"""The config stamp: one row whose version tells every proxy process to reload its snapshot."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.orm import Session

from app.db import now_utc
from app.models.project import ConfigStamp

stamps = cast(Table, ConfigStamp.__table__)


def bump(target: Session | Connection) -> None:
    """Mark the configuration changed; call inside the transaction that changes it."""
    stmt = update(stamps).where(stamps.c.id == 1).values(version=stamps.c.version + 1, changed_at=now_utc())
    result = target.execute(stmt)
    if getattr(result, "rowcount", 0) == 0:
        target.execute(stamps.insert().values(id=1, version=1, changed_at=now_utc()))


def read(conn: Connection) -> int:
    return conn.execute(select(stamps.c.version).where(stamps.c.id == 1)).scalar() or 0
