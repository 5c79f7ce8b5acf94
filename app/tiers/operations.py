"""Usage tier operations (SPEC 4). Operations flush; the caller commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import stamp
from app.db import MAX_ROW_ID
from app.errors import Conflict, Invalid, NotFound
from app.models.project import Project
from app.models.tier import UsageTier
from app.tiers.spec import tier_spec, tier_values

DEFAULT_KEY = "default"
DEFAULT_NAME = "Default New Customer Tier"


def ensure_default_tier(session: Session, project: Project) -> UsageTier:
    """Tier `default` v1: prepaid, period none, no limits, block, hard_cap, 1024 reserved."""
    tier = session.scalar(
        select(UsageTier).where(
            UsageTier.project_id == project.id, UsageTier.key == DEFAULT_KEY, UsageTier.version == 1
        )
    )
    if tier is None:
        tier = create_tier(session, project, {"key": DEFAULT_KEY, "name": DEFAULT_NAME})
    return tier


def latest_version(session: Session, project: Project, key: str) -> UsageTier | None:
    return session.scalar(
        select(UsageTier)
        .where(UsageTier.project_id == project.id, UsageTier.key == key)
        .order_by(UsageTier.version.desc())
        .limit(1)
    )


def create_tier(session: Session, project: Project, spec: dict[str, Any]) -> UsageTier:
    """Version 1 of a new tier, from SPEC 4 fields (USD amounts as decimals)."""
    values = tier_values(spec)
    if session.scalar(
        select(func.count())
        .select_from(UsageTier)
        .where(UsageTier.project_id == project.id, UsageTier.key == values["key"])
    ):
        raise Conflict(f"tier {values['key']!r} already exists", "key")
    tier = UsageTier(project_id=project.id, version=1, **values)
    session.add(tier)
    stamp.bump(session)
    session.flush()
    return tier


class TierLocked(Conflict):
    code = "tier_locked"

    @staticmethod
    def about(tier: UsageTier) -> str:
        return (
            f"tier {tier.key} v{tier.version} is locked: customers have used it. Clone it to make "
            "a new version (POST …/clone answers its number) and migrate customers to that."
        )


def find_version(session: Session, project: Project, key: str, version: int) -> UsageTier:
    if not 0 < version <= MAX_ROW_ID:  # no such version, and too large for the column besides
        raise NotFound(f"tier {key!r} has no version {version}", "version")
    tier = session.scalar(
        select(UsageTier).where(
            UsageTier.project_id == project.id, UsageTier.key == key, UsageTier.version == version
        )
    )
    if tier is None:
        raise NotFound(f"tier {key!r} has no version {version}", "version")
    return tier


def edit_tier(session: Session, tier: UsageTier, changes: dict[str, Any]) -> UsageTier:
    """Change an unlocked version; a version any customer was ever assigned to is immutable."""
    if tier.locked:
        raise TierLocked(TierLocked.about(tier), "version")
    if "key" in changes and changes["key"] != tier.key:
        raise Invalid("a tier's key cannot change", "key")
    current = {k: v for k, v in tier_spec(tier).items() if k not in ("version", "locked")}
    if "period" in changes and "anchor" not in changes:
        del current["anchor"]  # a new period takes its own default anchor
    for name, value in tier_values({**current, **changes}).items():
        setattr(tier, name, value)
    stamp.bump(session)
    session.flush()
    return tier


def clone_tier(session: Session, tier: UsageTier) -> UsageTier:
    """Version N+1 (N the key's latest) as an editable copy of this version."""
    latest = session.scalar(
        select(func.max(UsageTier.version)).where(
            UsageTier.project_id == tier.project_id, UsageTier.key == tier.key
        )
    )
    copy = UsageTier(project_id=tier.project_id, version=(latest or 0) + 1, locked=False)
    for column in UsageTier.__table__.columns:
        if column.key not in ("id", "project_id", "version", "locked", "created_at"):
            setattr(copy, column.key, getattr(tier, column.key))
    session.add(copy)
    stamp.bump(session)
    session.flush()
    return copy
