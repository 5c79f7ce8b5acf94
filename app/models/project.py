"""A project (tenant) with its settings, and the config stamp that invalidates proxy snapshots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

SHEDDING_TIERS = ("high", "middle", "low")
SHEDDING_LEVELS = ("off", "low", "middle")


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    # Settings (SPEC 6 "settings"); read by the proxy through its snapshot.
    new_customer_initial_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    default_tier_id: Mapped[int | None] = mapped_column(
        ForeignKey("usage_tiers.id", use_alter=True, ondelete="SET NULL")
    )
    default_shedding_tier: Mapped[str] = mapped_column(String(16), default="middle")
    default_allowed_regions: Mapped[list] = mapped_column(JSON, default=list)
    low_balance_tokens: Mapped[int | None] = mapped_column(BigInteger)
    require_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    shedding_level: Mapped[str] = mapped_column(String(16), default="off")
    capacity: Mapped[int | None] = mapped_column(Integer)
    auto_shedding: Mapped[bool] = mapped_column(Boolean, default=False)
    litellm_webhook_url: Mapped[str | None] = mapped_column(Text)
    # What Approve credits when no amount is given (SPEC 6); None: an amount is required.
    approval_tokens: Mapped[int | None] = mapped_column(BigInteger)
    # Origins (https://app.example.com) whose pages may frame the customer usage page (SPEC 10).
    portal_frame_origins: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    stripe_webhook_secret: Mapped[str | None] = mapped_column(Text)  # encrypted
    stripe_api_key: Mapped[str | None] = mapped_column(Text)  # encrypted
    stripe_prices: Mapped[dict] = mapped_column(JSON, default=dict)


class ConfigStamp(Base):
    """One row whose version every admin change bumps; proxies reload their snapshot when it moves."""

    __tablename__ = "config_stamp"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
