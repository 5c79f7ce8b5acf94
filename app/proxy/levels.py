"""Announcing a model's effective shedding level when it changes: event `shedding.changed`
(SPEC 7.1, 8), `{"model", "from", "to", "reason"}`, with no customer.

Whoever sees a level (a call of a project with automatic shedding, a change of the manual level)
compares it with what its process last saw; only a difference costs a short transaction, where
the model's row decides, so a change seen by many processes is announced once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.db import write_transaction
from app.events import recorder
from app.models.catalog import SheddingState
from app.proxy.auth import ModelInfo, ProjectInfo
from app.proxy.autoshed import ModelLevel, effective
from app.proxy.health import Health

states = cast(Table, SheddingState.__table__)
log = logging.getLogger(__name__)


class LevelWatch:
    """One per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[int, str] = {}
        self._lock = threading.Lock()

    def observe_model(
        self, health: Health, project: ProjectInfo, model: ModelInfo, manual: str, now: datetime
    ) -> None:
        self.observe(project.id, model, effective(health, project, model, manual), now)

    def observe_project(self, health: Health, project: ProjectInfo, manual: str, now: datetime) -> None:
        for model in project.models.values():
            self.observe_model(health, project, model, manual, now)

    def observe(self, project_id: int, model: ModelInfo, level: ModelLevel, now: datetime) -> None:
        with self._lock:
            if self._known.get(model.id) == level.level:
                return
        try:
            self._announce(project_id, model, level, now)
        except Exception:  # never fails the call that noticed it; the next one tries again
            log.exception("shedding level of model %s could not be recorded", model.name)
            return
        with self._lock:
            self._known[model.id] = level.level

    def _announce(self, project_id: int, model: ModelInfo, level: ModelLevel, now: datetime) -> None:
        with write_transaction(self.engine) as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(states)
                .values(model_id=model.id, project_id=project_id, level="off", changed_at=now)
                .on_conflict_do_nothing(index_elements=["model_id"])
            )
            before = conn.execute(
                select(states.c.level).where(states.c.model_id == model.id).with_for_update()
            ).scalar_one()
            if before == level.level:
                return
            conn.execute(
                update(states).where(states.c.model_id == model.id).values(level=level.level, changed_at=now)
            )
            recorder.record(
                conn,
                project_id=project_id,
                type="shedding.changed",
                now=now,
                data={"model": model.name, "from": before, "to": level.level, "reason": level.reason},
            )


def after_settings(gateway, project_id: int, manual: str, now: datetime) -> None:
    """A project's settings were saved: announce the models whose effective level moved with the
    manual level (the automatic part as the shared view has it)."""
    project = gateway.cache.current().projects.get(project_id)
    if project is not None:
        gateway.levels.observe_project(gateway.health, project, manual, now)
