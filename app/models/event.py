"""Events (append-only), webhook subscriptions and their deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UTCDateTime, now_utc

EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.blocked",
    "customer.unblocked",
    "customer.tier_changed",
    "customer.awaiting_approval",
    "customer.approved",
    "tokens.credited",
    "tokens.low",
    "tokens.exhausted",
    "usage.limit_reached",
    "usage.overage_started",
    "budget.threshold_crossed",
    "budget.exceeded",
    "purchase.completed",
    "purchase.refunded",
    "subscription.renewed",
    "subscription.cancelled",
    "shedding.changed",
)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_type_id", "project_id", "type", "id"),
        # Events that may happen once per period or crossing carry a dedupe key.
        UniqueConstraint("project_id", "dedupe_key"),
        Index(
            "ix_events_litellm_pending",
            "project_id",
            "id",
            sqlite_where=text("litellm_pending"),
            postgresql_where=text("litellm_pending"),
        ),
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
    # A budget event LiteLLM's webhook is owed (budget_crossed, threshold_crossed; SPEC 7.4).
    litellm_pending: Mapped[bool] = mapped_column(default=False, server_default=false())


class Hook(Base):
    """A webhook subscription (Zapier REST hook or added in the admin)."""

    __tablename__ = "hooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    target_url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # encrypted
    # False once its target answered 410 (SPEC 7.2): kept, with its deliveries, for the record.
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    event_types: Mapped[list[HookEventType]] = relationship(
        cascade="all, delete-orphan", order_by="HookEventType.event_type", lazy="selectin"
    )

    @property
    def types(self) -> list[str]:
        return [t.event_type for t in self.event_types]


class HookEventType(Base):
    """One event type a hook subscribes to: recording an event finds its hooks by this index."""

    __tablename__ = "hook_event_types"
    __table_args__ = (Index("ix_hook_event_types_type", "event_type", "hook_id"),)

    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), primary_key=True)


class Delivery(Base):
    """The outbox: one row per (hook, event), written with the event and sent outside any request.

    A sender claims a due row (`claimed_until`) before it sends, so any number of senders never
    send one delivery twice at once; a sender that dies leaves a claim that runs out.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("hook_id", "event_id"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_hook_id", "hook_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, failed, cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(300))  # host:pid of the sender
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """One try at a delivery: when, what the target answered (or why it could not), how long."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
