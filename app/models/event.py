"""Events (append-only), webhook subscriptions, their deliveries, and processed inbound webhooks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.blocked",
    "customer.unblocked",
    "customer.tier_changed",
    "tokens.credited",
    "tokens.low",
    "tokens.exhausted",
    "usage.limit_reached",
    "usage.overage_started",
    "budget.threshold_crossed",
    "budget.exceeded",
    "purchase.completed",
    "purchase.refunded",
)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_type_id", "project_id", "type", "id"),
        # Events that may happen once per period or crossing carry a dedupe key.
        UniqueConstraint("project_id", "dedupe_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    customer_external_id: Mapped[str | None] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class Hook(Base):
    """A webhook subscription (Zapier REST hook or added in the admin)."""

    __tablename__ = "hooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    target_url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(Text)  # encrypted
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class Delivery(Base):
    """The outbox: one row per (hook, event), sent and retried outside any request."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("hook_id", "event_id"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboundWebhook(Base):
    """(provider, event_id) stored before any side effect, so a retried event is processed once."""

    __tablename__ = "inbound_webhooks"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    result: Mapped[str | None] = mapped_column(Text)
