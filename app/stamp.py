"""The config stamp: one row whose version tells every proxy process to reload its snapshot."""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from app.db import now_utc
from app.models.project import ConfigStamp

stamps = ConfigStamp.__table__


def bump(target: Session | Connection) -> None:
    """Mark the configuration changed; call inside the transaction that changes it."""
    stmt = update(stamps).where(stamps.c.id == 1).values(version=stamps.c.version + 1, changed_at=now_utc())
    if target.execute(stmt).rowcount == 0:
        target.execute(stamps.insert().values(id=1, version=1, changed_at=now_utc()))


def read(conn: Connection) -> int:
    return conn.execute(select(stamps.c.version).where(stamps.c.id == 1)).scalar() or 0
