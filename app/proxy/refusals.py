"""Refused calls of known customers (SPEC 5.5), counted per customer, code and UTC hour, each count
with its latest refusal as an example (time, message, model), and the customer's last refusal.

A refused call pays a dict update under a lock; a background flusher per process writes what
gathered every FLUSH_S seconds in one transaction: one statement per CHUNK counts and their
examples, one for every customer's last refusal. However hard a refused client retries, the
database sees a few statements per flush, and an admin sees the counts within seconds.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, Table, bindparam, case, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from app.db import now_utc, write_transaction
from app.models.customer import Customer
from app.models.usage import REFUSAL_CODES, RefusalCount

COUNTED = frozenset(REFUSAL_CODES)
FLUSH_S = 2.0
MAX_MESSAGE = 2000
MAX_MODEL = 200
# Counts written per statement: 7 bound values a row stays far under PostgreSQL's 65,535 and
# SQLite's 32,766 values per statement, however many customers a shedding burst refused.
CHUNK = 1000

log = logging.getLogger(__name__)
customers = cast(Table, Customer.__table__)
counts_table = cast(Table, RefusalCount.__table__)


@dataclass(frozen=True)
class Last:
    at: datetime
    code: str
    message: str
    model: str | None


Key = tuple[int, str, datetime, str]  # project, customer id, UTC hour, code


class RefusalCounter:
    """One per process."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = now_utc, every_s: float = FLUSH_S):
        self.engine = engine
        self.clock = clock
        self.every_s = every_s
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # one flush writes at a time (the flusher's, atexit's, a test's)
        self._counts: Counter[Key] = Counter()
        self._examples: dict[Key, Last] = {}  # the latest refusal of each count
        self._flusher: threading.Thread | None = None

    def note(self, project_id: int, customer_id: str | None, code: str, message: str, model: object) -> None:
        if customer_id is None or code not in COUNTED:
            return
        now = self.clock()
        hour = now.replace(minute=0, second=0, microsecond=0)
        shown = _storable(model, MAX_MODEL) if isinstance(model, str) else None
        key = (project_id, customer_id, hour, code)
        example = Last(now, code, _storable(message, MAX_MESSAGE), shown)
        with self._lock:
            self._counts[key] += 1
            self._examples[key] = example
            if self._flusher is None:
                self._start()

    def flush(self) -> int:
        """Write what gathered; returns how many statements wrote (0 when nothing had). When it
        returns, nothing noted before the call is still being written."""
        with self._writing:
            with self._lock:
                counts, self._counts = self._counts, Counter()
                examples, self._examples = self._examples, {}
            if not counts:
                return 0
            last = _latest_per_customer(examples)
            try:
                with write_transaction(self.engine) as conn:
                    ids = self._ids(conn, set(last))
                    return self._write_counts(conn, counts, examples, ids) + self._write_last(conn, last, ids)
            except Exception:
                log.exception("refusal counts could not be written; they are kept for the next flush")
                self._keep(counts, examples)
                return 0

    def _keep(self, counts: Counter[Key], examples: dict[Key, Last]) -> None:
        """A batch that could not be written goes back, merged with what gathered since."""
        with self._lock:
            self._counts.update(counts)
            for key, seen in examples.items():
                newer = self._examples.get(key)
                if newer is None or newer.at < seen.at:
                    self._examples[key] = seen

    def _ids(self, conn, keys: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
        ids: dict[tuple[int, str], int] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), CHUNK):
            rows = conn.execute(
                select(customers.c.project_id, customers.c.external_id, customers.c.id).where(
                    tuple_(customers.c.project_id, customers.c.external_id).in_(
                        ordered[start : start + CHUNK]
                    )
                )
            )
            ids.update(((row.project_id, row.external_id), row.id) for row in rows)
        return ids

    def _write_counts(
        self, conn, counts: Counter[Key], examples: dict[Key, Last], ids: dict[tuple[int, str], int]
    ) -> int:
        # In one order in every process: two flushes touching the same rows never deadlock.
        rows = sorted(
            (
                _count_row(ids[key[:2]], key, n, examples[key])
                for key, n in counts.items()
                if key[:2] in ids  # a customer deleted since: nothing to count for
            ),
            key=lambda row: (row["customer_id"], row["hour"], row["code"]),
        )
        for start in range(0, len(rows), CHUNK):
            self._upsert(conn, rows[start : start + CHUNK])
        return -(-len(rows) // CHUNK)

    @staticmethod
    def _upsert(conn, rows: list[dict]) -> None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(counts_table).values(rows)
        # Another process's later example, written first, is not replaced by an older one.
        newer = or_(counts_table.c.last_at.is_(None), insert.excluded.last_at >= counts_table.c.last_at)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["customer_id", "hour", "code"],
                set_={
                    "count": counts_table.c.count + insert.excluded.count,
                    **{
                        name: case((newer, insert.excluded[name]), else_=counts_table.c[name])
                        for name in ("last_at", "message", "model")
                    },
                },
            )
        )

    def _write_last(self, conn, last: dict[tuple[int, str], Last], ids: dict[tuple[int, str], int]) -> int:
        params = [
            {"pk": ids[key], "at": seen.at, "code": seen.code, "message": seen.message, "model": seen.model}
            for key, seen in sorted(last.items(), key=lambda item: ids.get(item[0], 0))
            if key in ids
        ]
        if not params:
            return 0
        conn.execute(
            update(customers)
            # Another process's later refusal, written first, is not overwritten by an older one.
            .where(
                customers.c.id == bindparam("pk"),
                or_(customers.c.last_refusal_at.is_(None), customers.c.last_refusal_at <= bindparam("at")),
            )
            .values(
                last_refusal_at=bindparam("at"),
                last_refusal_code=bindparam("code"),
                last_refusal_message=bindparam("message"),
                last_refusal_model=bindparam("model"),
                # A refused call is a call: an awaiting customer retrying is seen, not "never".
                last_seen_at=case(
                    (
                        or_(customers.c.last_seen_at.is_(None), customers.c.last_seen_at < bindparam("at")),
                        bindparam("at"),
                    ),
                    else_=customers.c.last_seen_at,
                ),
            ),
            params,
        )
        return 1

    def _start(self) -> None:
        self._flusher = threading.Thread(target=self._run, name="refusal-counts", daemon=True)
        self._flusher.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self.every_s)
            self.flush()


def _storable(text: str, most: int) -> str:
    """What a client sent, as any database stores it: a lone surrogate (valid in JSON) cannot be
    encoded and PostgreSQL refuses NUL in text; either would fail every later flush of the process.
    Other control characters are shown as '?' too (the admin prints these lines); spaces of any
    script stay."""
    cut = text[:most].encode("utf-8", "replace").decode("utf-8")
    if cut.isprintable():  # nearly always: no character to look at
        return cut
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in cut)


def _count_row(customer_pk: int, key: Key, count: int, example: Last) -> dict:
    return {
        "customer_id": customer_pk,
        "hour": key[2],
        "code": key[3],
        "count": count,
        "last_at": example.at,
        "message": example.message,
        "model": example.model,
    }


def _latest_per_customer(examples: dict[Key, Last]) -> dict[tuple[int, str], Last]:
    """Each customer's last refusal: the latest example among its counts."""
    last: dict[tuple[int, str], Last] = {}
    for (project, customer, _, _), seen in examples.items():
        kept = last.get((project, customer))
        if kept is None or kept.at < seen.at:
            last[(project, customer)] = seen
    return last
