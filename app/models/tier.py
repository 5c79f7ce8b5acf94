"""Usage tiers: named, versioned plans (SPEC 4)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

MODEL_TIERS = ("standard", "premium", "super_premium", "reasoning")
ON_LIMIT = ("block", "allow", "restrict")
REPLENISH_MODES = ("reset", "add")
ANCHORS = ("calendar", "assignment")


class UsageTier(Base):
    __tablename__ = "usage_tiers"
    __table_args__ = (UniqueConstraint("project_id", "key", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    prepaid: Mapped[bool] = mapped_column(Boolean, default=True)
    period: Mapped[str] = mapped_column(String(16), default="none")
    anchor: Mapped[str] = mapped_column(String(16), default="calendar")
    replenish_tokens: Mapped[int | None] = mapped_column(BigInteger)
    replenish_mode: Mapped[str] = mapped_column(String(8), default="reset")
    max_balance: Mapped[int | None] = mapped_column(BigInteger)
    # {"premium": {"calls": 500, "tokens": 2000000}}; a missing tier or a null means unlimited.
    limits: Mapped[dict] = mapped_column(JSON, default=dict)
    on_limit: Mapped[str] = mapped_column(String(16), default="block")
    restrict_to: Mapped[str | None] = mapped_column(String(16))
    max_budget_nusd: Mapped[int | None] = mapped_column(BigInteger)
    soft_budget_nusd: Mapped[int | None] = mapped_column(BigInteger)
    model_budgets_nusd: Mapped[dict] = mapped_column(JSON, default=dict)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger)
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    default_reserve_tokens: Mapped[int] = mapped_column(Integer, default=1024)
    hard_cap: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set at the first assignment and never cleared: a version customers have used is immutable.
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
