"""Declarative base, the UTC datetime type and the clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime

from sqlalchemy import Connection, DateTime, Engine, MetaData, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Aware UTC in Python; SQLite stores it naive, PostgreSQL as timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Ids and version numbers are INTEGER columns: a number past this names no row, and PostgreSQL
# refuses it outright (an error, not "not found"), so callers turn it away first.
MAX_ROW_ID = 2**31 - 1


def row_id(text: str) -> int | None:
    """A row id written as text (a URL or query argument), or None when it cannot be one."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10:  # "²" is a digit int() refuses
        return None
    value = int(text)
    return value if value <= MAX_ROW_ID else None


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with a Z, as every JSON answer shows time."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# SQLite's lock wait is a blocking sleep in C: a greenlet that yields while another holds the
# write lock stalls the whole process. Writers in one process take turns through this lock
# (gevent makes it cooperative once the process is patched); PostgreSQL needs no such thing.
_sqlite_writer = threading.Lock()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A short write transaction; serialised per process on SQLite."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with _sqlite_writer, engine.begin() as conn:
        yield conn


def writer_lock(engine: Engine) -> AbstractContextManager:
    """The process's SQLite writers' lock; nothing on PostgreSQL."""
    return _sqlite_writer if engine.dialect.name == "sqlite" else nullcontext()


def chunks(ids: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    """`ids` in slices small enough for one IN list each (drivers and servers bound bind params)."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def insert_ignoring_conflict(conn: Connection, table, values: dict, conflict_on: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the row's id if this call created it."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict_on)
    return conn.execute(stmt.returning(table.c.id)).scalar()


def lock_name(conn: Connection, name: str) -> None:
    """Serialise, until the transaction ends, every transaction that locks the same name.

    For a rule that spans rows which may not exist yet (a refund and the purchase it belongs to,
    arriving at once): PostgreSQL takes a transaction advisory lock; SQLite writers already take
    turns (session_writes), so there is nothing more to do.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name})


@contextmanager
def session_writes(session) -> Iterator[None]:
    """An ORM unit of work that writes, committed at the end (the boundary's one commit).

    On SQLite it runs under the writers' lock in a transaction of its own: a transaction begun
    by earlier reads could not be upgraded once another writer has committed (WAL snapshot).
    """
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        session.commit()
    with _sqlite_writer if sqlite else nullcontext():
        try:
            yield
            session.commit()
        except BaseException:
            session.rollback()
            raise
