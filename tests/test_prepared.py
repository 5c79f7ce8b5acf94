"""app/prepared.py: the hot path's statements on the raw DB-API connection read and write values
exactly as SQLAlchemy does, on SQLite and on the machine's PostgreSQL (both CI passes), and a
connection the server dropped takes the pool's older connections with it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    update,
)

from app.db import UTCDateTime
from app.prepared import Prepared, statements
from tests.test_gevent_postgres import libpq, server_url

DB = "tollgate_prepared_test"
meta = MetaData()
things = Table(
    "things",
    meta,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
    Column("amount", BigInteger),
    Column("flag", Boolean),
    Column("at", UTCDateTime),
    Column("regions", JSON),
)
AT = datetime(2026, 12, 5, 10, 30, 15, 123456, tzinfo=UTC)
READ = Prepared(
    select(
        things.c.id, things.c.flag, things.c.at, things.c.regions, (things.c.amount * 2).label("twice")
    ).where(things.c.name == bindparam("name"), things.c.flag.is_not(None), things.c.amount > 5)
)
ADD = Prepared(
    update(things)
    .where(things.c.name == bindparam("name"))
    .values(amount=things.c.amount + bindparam("by", type_=BigInteger), at=bindparam("at"))
    .returning(things.c.amount, things.c.at)
)
WRITE = Prepared(
    insert(things).values(
        name=bindparam("name"), amount=bindparam("amount"), flag=bindparam("flag"), at=bindparam("at")
    )
)


def postgres() -> Engine:
    with psycopg.connect(libpq(server_url(), "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return create_engine(server_url().replace("/test", f"/{DB}", 1), pool_size=5, max_overflow=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path: Path):
    made = create_engine(f"sqlite:///{tmp_path / 'p.db'}") if request.param == "sqlite" else postgres()
    meta.create_all(made)
    with made.begin() as conn:
        conn.execute(insert(things), [{"name": "a", "amount": 7, "flag": True, "at": AT, "regions": ["eu"]}])
    yield made
    made.dispose()


def test_rows_read_as_sqlalchemy_reads_them(engine: Engine):
    with engine.connect() as conn:
        expected = conn.execute(READ.statement, {"name": "a"}).one()
    with statements(engine) as raw:
        row = raw.first(READ, {"name": "a"})
        missing = raw.first(READ, {"name": "nobody"})
    assert row == tuple(expected) == (1, True, AT, ["eu"], 14)
    assert (row.flag, row.at, row.regions, row.twice) == (True, AT, ["eu"], 14)
    assert row.at.tzinfo is UTC  # aware, as UTCDateTime gives it
    assert missing is None


def test_values_bound_as_sqlalchemy_binds_them(engine: Engine):
    later = AT + timedelta(hours=1)
    with statements(engine) as raw:
        raw.run(WRITE, {"name": "b", "amount": 1, "flag": False, "at": later, "unused": "ignored"})
        added = raw.first(ADD, {"name": "b", "by": 2**40, "at": AT})
    assert added == (1 + 2**40, AT)
    with engine.connect() as conn:
        stored = conn.execute(
            select(things.c.amount, things.c.flag, things.c.at).where(things.c.name == "b")
        ).one()
    assert tuple(stored) == (1 + 2**40, False, AT)
    with pytest.raises(ValueError, match="naive"), statements(engine) as raw:
        raw.run(ADD, {"name": "b", "by": 1, "at": datetime(2026, 1, 1)})  # naive: refused


def test_sqlite_statements_are_one_transaction(engine: Engine):
    """On SQLite a failure after a write takes the write back (the settlement's two statements)."""
    with pytest.raises(RuntimeError), statements(engine) as raw:
        raw.first(ADD, {"name": "a", "by": 100, "at": AT})
        raise RuntimeError("after the first statement")
    with engine.connect() as conn:
        amount = conn.execute(select(things.c.amount).where(things.c.name == "a")).scalar_one()
    assert amount == (7 if engine.dialect.name == "sqlite" else 107)  # PostgreSQL: autocommit


def test_a_dropped_server_connection_takes_the_older_ones_with_it():
    """Five pooled connections, all killed by the server: one call fails, the next ones reconnect
    (as SQLAlchemy's own path does), rather than each meeting a dead connection in turn."""
    engine = postgres()
    meta.create_all(engine)
    try:
        held = [engine.raw_connection() for _ in range(5)]
        for fairy in held:
            fairy.close()  # back to the pool, open
        with psycopg.connect(libpq(server_url(), "postgres"), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (DB,)
            ).fetchone()
        assert killed is not None and killed[0] >= 5
        outcomes = []
        for _ in range(5):
            try:
                with statements(engine) as raw:
                    raw.first(READ, {"name": "a"})
                outcomes.append("ok")
            except psycopg.OperationalError:
                outcomes.append("failed")
        assert outcomes == ["failed", "ok", "ok", "ok", "ok"]
    finally:
        engine.dispose()


def test_sqlite_hot_writes_keep_one_connection_and_postgres_returns_its_own(engine: Engine):
    """SQLite: one connection for the hot path, so its page cache stays valid between calls (a
    pooled one in turn would read every page again); it survives a failed call. PostgreSQL: the
    pool's, given back after each use."""
    for fairy in [engine.raw_connection() for _ in range(2)]:
        fairy.close()  # two in the pool: taken in turn, they would alternate
    with statements(engine) as first:
        first.first(READ, {"name": "a"})
    with pytest.raises(RuntimeError), statements(engine) as failed:
        raise RuntimeError("a call that fails")
    with statements(engine) as second:
        assert second.first(READ, {"name": "a"}) is not None
    if engine.dialect.name == "sqlite":
        assert first.dbapi is failed.dbapi is second.dbapi
    else:  # a refusal raised between statements (insufficient tokens...) keeps its connection
        assert not failed.dbapi.closed
        pooled = engine.pool.checkedin()
        with pytest.raises(RuntimeError), statements(engine):
            raise RuntimeError("refused")
        assert engine.pool.checkedin() == pooled and failed.dbapi.closed is False
    assert engine.pool.checkedout() == 0


def test_a_forked_process_opens_its_own_sqlite_writer(tmp_path: Path):
    """A child forked after the parent wrote does not write through the parent's connection."""
    from app import prepared

    made = create_engine(f"sqlite:///{tmp_path / 'f.db'}")
    meta.create_all(made)
    with statements(made) as raw:
        raw.run(WRITE, {"name": "parent", "amount": 1, "flag": True, "at": AT})
    parent = prepared._writers[made]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        with statements(made) as raw:
            raw.run(WRITE, {"name": "child", "amount": 2, "flag": True, "at": AT})
        os.write(write, b"own" if prepared._writers[made] is not parent else b"inherited")
        os._exit(0)
    os.waitpid(pid, 0)
    answer = os.read(read, 20)
    os.close(read)
    os.close(write)
    assert answer == b"own"
    with made.connect() as conn:
        assert sorted(conn.execute(select(things.c.name)).scalars()) == ["child", "parent"]
    made.dispose()
