"""Load shedding's rule (SPEC 8, 3.2 step 4): a customer whose shedding tier is at or below the
effective level is refused. The effective level is the higher of the project's manual level, read
by the call's own hold statement (so a change applies to the very next call, SPEC 3.5), and the
automatic level its process sees from the shared health view."""

from __future__ import annotations

from typing import cast

from sqlalchemy import ColumnElement, Table, bindparam, case, or_, select

from app.models.customer import Customer
from app.models.project import Project

TIER_RANK = {"low": 1, "middle": 2, "high": 3}
LEVEL_RANK = {"off": 0, "low": 1, "middle": 2}
MANUAL_RETRY_AFTER_S = 60

customers = cast(Table, Customer.__table__)
projects = cast(Table, Project.__table__)


def higher(a: str, b: str) -> str:
    return a if LEVEL_RANK.get(a, 0) >= LEVEL_RANK.get(b, 0) else b


def refusal(shedding_tier: str, level: str, automatic: bool = False) -> str:
    """The 503 `load_shed` message."""
    how = " (automatic)" if automatic else ""
    return (
        f"Shedding load: calls of {shedding_tier}-priority customers are refused while the shedding "
        f"level is {level}{how}. Try again later."
    )


def sheds(level: str, shedding_tier: str) -> bool:
    return TIER_RANK.get(shedding_tier, 3) <= LEVEL_RANK.get(level, 0)


def _tier_rank(column) -> ColumnElement:
    return case(TIER_RANK, value=column, else_=3)


def _level_rank(expression) -> ColumnElement:
    return case(LEVEL_RANK, value=expression, else_=0)


# The project's manual level, read in the statement that decides (a primary-key lookup).
MANUAL = select(projects.c.shedding_level).where(projects.c.id == bindparam("b_project")).scalar_subquery()
# True when the customer row's shedding tier is shed by the manual or the automatic level.
SHED = or_(
    _tier_rank(customers.c.shedding_tier) <= _level_rank(MANUAL),
    _tier_rank(customers.c.shedding_tier) <= _level_rank(bindparam("auto_level")),
)
