"""The app's customers: balances, tier, shedding tier, regions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("project_id", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(256))  # the app's customer_id
    name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str | None] = mapped_column(String(256))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    token_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    # Tokens held by calls in flight; released by settlement, or by the scheduler after expiry.
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    reservation_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("usage_tiers.id"), index=True)
    tier_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    shedding_tier: Mapped[str] = mapped_column(String(16), default="middle")
    allowed_regions: Mapped[list] = mapped_column(JSON, default=list)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    spend_nusd: Mapped[int] = mapped_column(BigInteger, default=0)  # lifetime
    # Lifetime Σ usage_records.tokens_unbilled: tokens served that the balance could not pay for.
    tokens_unbilled: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The customer's own budget (LiteLLM's customer max_budget), on top of the tier's. Its period
    # (`budget_duration`, a SPEC 4 fixed period; none = never resets) runs from `budget_set_at`.
    max_budget_nusd: Mapped[int | None] = mapped_column(BigInteger)
    budget_duration: Mapped[str | None] = mapped_column(String(16))
    budget_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    low_balance_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The customer's last refused call (SPEC 5.5), written with its hour's count.
    last_refusal_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_refusal_code: Mapped[str | None] = mapped_column(String(32))
    last_refusal_message: Mapped[str | None] = mapped_column(Text)
    last_refusal_model: Mapped[str | None] = mapped_column(String(200))
    # Signs the customer's usage page links with the app's secret (SPEC 10); a new value revokes
    # every link at once. None until the first link.
    portal_secret: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
