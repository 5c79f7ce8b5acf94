"""The hot path's statements, compiled once per dialect and run on the raw DB-API connection
(DESIGN "The hot path").

SQLAlchemy builds and checks the statements (types, dialect differences, RETURNING); this module
keeps what it compiled and, per call, only binds the values and reads the row. That skips the
execution machinery around each statement (the Connection, its events, the cache lookup, the
result objects), which cost more CPU than the statements themselves. Everything else in the app
uses SQLAlchemy as usual.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable

from app.db import writer_lock

Processor = Callable[[Any], Any] | None


class _Compiled:
    """One statement as one dialect runs it: its SQL, how to bind its values, how to read its row."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement cannot have parameters rendered at execution")
        self.sql = compiled.string
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup or ()) if compiled.positional else list(binds)
        escaped = compiled.escaped_bind_names or {}
        self.positional = compiled.positional
        # The statement's constants are bound once; per call only the named values are.
        self.template: list[Any] = []
        self.slots: list[tuple[int, str, Processor]] = []
        for index, name in enumerate(names):
            bind = binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self.slots.append((index, name, process))
                self.template.append(None)
            else:
                value = bind.effective_value
                self.template.append(process(value) if process is not None else value)
        self.keys = [escaped.get(name, name) for name in names]
        columns = list(getattr(statement, "exported_columns", ()))
        self.row = namedtuple("Row", [c.key for c in columns]) if columns else None  # type: ignore[misc]
        self.readers: list[Processor] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        self.reads = any(self.readers)

    def parameters(self, given: dict[str, Any]) -> tuple | dict:
        values = self.template.copy()
        for index, name, process in self.slots:
            value = given[name]
            values[index] = process(value) if process is not None else value
        if self.positional:
            return tuple(values)
        return dict(zip(self.keys, values, strict=True))

    def row_of(self, raw: tuple) -> Any:
        assert self.row is not None
        if self.reads:
            raw = tuple(
                read(value) if read is not None and value is not None else value
                for read, value in zip(self.readers, raw, strict=True)
            )
        return self.row._make(raw)


class Prepared:
    """A statement the hot path runs on every call, compiled the first time each dialect runs it."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def on(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = _Compiled(self.statement, dialect)
        return compiled


class Raw:
    """A DB-API connection running prepared statements (in its transaction, if it has one)."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect) -> None:
        self.dbapi = dbapi_connection
        self.dialect = dialect

    @classmethod
    def within(cls, conn: Connection) -> Raw:
        """The DB-API connection under a SQLAlchemy connection: its statements join its transaction."""
        return cls(conn.connection.dbapi_connection, conn.dialect)

    def first(self, prepared: Prepared, params: dict[str, Any]) -> Any:
        """The statement's first row (named like its columns, values read as SQLAlchemy reads
        them), or None."""
        compiled = prepared.on(self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(compiled.sql, compiled.parameters(params))
            raw = cursor.fetchone()
        finally:
            cursor.close()
        return compiled.row_of(raw) if raw is not None else None

    def run(self, prepared: Prepared, params: dict[str, Any]) -> None:
        compiled = prepared.on(self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(compiled.sql, compiled.parameters(params))
        finally:
            cursor.close()


@contextmanager
def statements(engine: Engine) -> Iterator[Raw]:
    """A DB-API connection for the hot path's statements, each atomic on its own.

    PostgreSQL runs them in autocommit on a pooled connection: one round trip each, no BEGIN or
    COMMIT. A connection the database dropped is invalidated, with every connection the pool opened
    before it, as SQLAlchemy does on its own path.

    SQLite runs them as one transaction under the process's writer lock (DESIGN's SQLite trap),
    which is what the settlement's two statements need, on the one connection the process keeps
    for them: each SQLite connection has its own page cache, which another connection's commit
    invalidates, so pooled connections taken in turn would read every page again on every call.
    """
    if engine.dialect.name == "sqlite":
        with writer_lock(engine):
            dbapi = _writer(engine)
            try:
                yield Raw(dbapi, engine.dialect)
                dbapi.commit()
            except BaseException:
                _rollback_or_drop(engine, dbapi)
                raise
        return
    fairy = engine.raw_connection()
    dbapi = fairy.dbapi_connection
    try:
        dbapi.autocommit = True
        yield Raw(dbapi, engine.dialect)
    except BaseException as exc:
        if isinstance(exc, engine.dialect.loaded_dbapi.Error) and engine.dialect.is_disconnect(
            exc, dbapi, None
        ):
            engine.pool._invalidate(fairy, exc)  # the server went away: so did every older connection
        elif not isinstance(exc, Exception):  # interrupted (a killed greenlet): a statement may still run
            fairy.invalidate(exc)
        raise  # a refusal raised between statements leaves the connection as good as it was
    finally:
        if fairy.is_valid:
            try:
                dbapi.autocommit = False
            except engine.dialect.loaded_dbapi.Error as exc:
                fairy.invalidate(exc)
        fairy.close()


# Per engine: the SQLite connection its hot-path writes use. Taken out of the pool (detached),
# made by it with its connect-time pragmas; a forked process forgets its parent's and opens its own.
_writers: WeakKeyDictionary[Engine, Any] = WeakKeyDictionary()
os.register_at_fork(after_in_child=_writers.clear)


def _writer(engine: Engine) -> Any:
    dbapi = _writers.get(engine)
    if dbapi is None:
        fairy = engine.raw_connection()
        fairy.detach()
        dbapi = _writers[engine] = fairy.dbapi_connection
    return dbapi


def _rollback_or_drop(engine: Engine, dbapi: Any) -> None:
    try:
        dbapi.rollback()
    except engine.dialect.loaded_dbapi.Error:
        _writers.pop(engine, None)  # unusable: the next call opens another
        dbapi.close()
