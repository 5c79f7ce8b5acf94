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
from app.models.project import Project
from app.proxy.auth import ModelInfo, ProjectInfo
from app.proxy.autoshed import AutoLevel, automatic, level_of

states = cast(Table, SheddingState.__table__)
projects = cast(Table, Project.__table__)
log = logging.getLogger(__name__)


class LevelWatch:
    """One per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[int, str] = {}
        self._lock = threading.Lock()

    def observe(
        self, project: ProjectInfo, model: ModelInfo, auto: AutoLevel, now: datetime, force: bool = False
    ) -> None:
        """`auto`: the automatic level this process sees for the model. The project's manual level
        and whether automatic shedding is on are read fresh when a change is suspected (or forced:
        the settings were just saved, and this process's snapshot may not show them yet)."""
        suspected = level_of(project.shedding_level, auto, project.auto_shedding).level
        with self._lock:
            if not force and self._known.get(model.id) == suspected:
                return
        try:
            level = self._announce(project.id, model, auto, now)
        except Exception:  # never fails the call that noticed it; the next one tries again
            log.exception("shedding level of model %s could not be recorded", model.name)
            return
        with self._lock:
            self._known[model.id] = level

    def _announce(self, project_id: int, model: ModelInfo, auto: AutoLevel, now: datetime) -> str:
        with write_transaction(self.engine) as conn:
            manual, auto_on = conn.execute(
                select(projects.c.shedding_level, projects.c.auto_shedding).where(projects.c.id == project_id)
            ).one()
            level = level_of(manual, auto, auto_on)
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(states)
                .values(model_id=model.id, project_id=project_id, level="off", changed_at=now)
                .on_conflict_do_nothing(index_elements=["model_id"])
            )
            before = conn.execute(
                select(states.c.level).where(states.c.model_id == model.id).with_for_update()
            ).scalar_one()
            if before != level.level:
                conn.execute(
                    update(states)
                    .where(states.c.model_id == model.id)
                    .values(level=level.level, changed_at=now)
                )
                recorder.record(
                    conn,
                    project_id=project_id,
                    type="shedding.changed",
                    now=now,
                    data={"model": model.name, "from": before, "to": level.level, "reason": level.reason},
                )
            return level.level


def after_settings(gateway, project_id: int, now: datetime) -> None:
    """A project's settings were saved: announce the models whose effective level moved with them
    (the manual level and the automatic switch are read as saved)."""
    project = gateway.cache.current().projects.get(project_id)
    if project is None:
        return
    for model in project.models.values():
        gateway.levels.observe(project, model, automatic(gateway.health, project, model), now, force=True)
