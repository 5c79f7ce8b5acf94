"""When each API key was last used (the admin's keys list).

Written at most once a minute per key and process: a write per call would add a statement to the
hot path for a column people read to the minute ("used 3 minutes ago").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, bindparam, update

from app.models.api_key import ApiKey
from app.prepared import Prepared, statements

_TOUCH = Prepared(update(ApiKey).where(ApiKey.id == bindparam("key_id")).values(last_used_at=bindparam("at")))


class KeyUse:
    def __init__(self, engine: Engine, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.interval_s = interval_s
        self.clock = clock
        self._written: dict[int, float] = {}

    def note(self, key_id: int | None, at: datetime) -> None:
        """Record a use of the key; the master key (no id) has no row to write."""
        if key_id is None:
            return
        now = self.clock()
        last = self._written.get(key_id)
        if last is not None and now - last < self.interval_s:
            return
        self._written[key_id] = now  # before the write: concurrent calls of this key skip it
        with statements(self.engine) as conn:
            conn.run(_TOUCH, {"key_id": key_id, "at": at})
