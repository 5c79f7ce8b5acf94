"""Stripe's side of the ledger (SPEC 7.5): every received event with what it did, the purchases it
fulfilled (checkout sessions and subscription invoices), and each payment's refund state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

OUTCOMES = (
    "credited",  # a paid checkout session: tokens credited and/or tier set
    "subscribed",  # a subscription-mode session: tier set, Stripe customer linked
    "renewed",  # invoice.paid: the period's tokens granted
    "refunded",  # charge.refunded: tokens taken back
    "cancelled",  # customer.subscription.deleted: back to the default tier
    "awaiting_payment",  # an unpaid session (delayed payment method): nothing until it succeeds
    "payment_failed",  # async payment failed: recorded only
    "refund_waiting",  # a refund whose purchase has not arrived: applied when it does
    "invoice_waiting",  # a paid invoice whose customer is not known yet: granted when it is
    "already_fulfilled",  # the session or invoice was fulfilled by another event
    "needs_review",  # nothing could be granted (no customer, nothing bought): see the detail
    "ignored",  # another type, billing reason or account
    "api_error",  # Stripe's API could not be asked; processed when Stripe sends the event again
)


class InboundWebhook(Base):
    """A received Stripe event: (project, provider, event id) is stored in the same transaction as
    its effects, so a retried, duplicated or concurrent delivery is processed once."""

    __tablename__ = "inbound_webhooks"
    __table_args__ = (
        UniqueConstraint("project_id", "provider", "event_id"),
        Index("ix_inbound_webhooks_project_id_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    outcome: Mapped[str] = mapped_column(String(32), default="ignored", server_default="ignored")
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The session, charge, invoice or subscription the event was about.
    object_id: Mapped[str | None] = mapped_column(String(255))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    customer_external_id: Mapped[str | None] = mapped_column(String(256))
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id", ondelete="SET NULL"))


class Purchase(Base):
    """A checkout session, subscription invoice or subscription cancellation, claimed once: its
    unique key makes a session's `completed` and `async_payment_succeeded` events (or an invoice's
    retries) credit one time."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("project_id", "object_id"),
        Index("ix_purchases_project_payment_intent", "project_id", "payment_intent"),
        Index("ix_purchases_project_stripe_customer", "project_id", "stripe_customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    object_id: Mapped[str] = mapped_column(String(255))  # cs_…, in_… or (cancelled) sub_…
    kind: Mapped[str] = mapped_column(String(16))  # checkout | subscription | invoice | cancellation
    # None while an invoice waits for its customer to be known (a checkout session links it).
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent: Mapped[str | None] = mapped_column(String(255))
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    tier_key: Mapped[str | None] = mapped_column(String(64))
    amount_total: Mapped[int | None] = mapped_column(BigInteger)  # Stripe's minor units
    currency: Mapped[str | None] = mapped_column(String(8))
    event_id: Mapped[str] = mapped_column(String(200))  # the Stripe event that claimed it
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChargeRefund(Base):
    """What Stripe has said about a payment's refunds, kept even before its purchase arrives.

    `amount_refunded` is Stripe's cumulative figure (the highest seen: events come in any order);
    `tokens_taken_back` is what the balance gave up so far, so each refund takes only the rest of
    the refunded share (SPEC 7.5).
    """

    __tablename__ = "charge_refunds"
    __table_args__ = (UniqueConstraint("project_id", "payment_intent"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    payment_intent: Mapped[str] = mapped_column(String(255))
    charge_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(8))
    tokens_taken_back: Mapped[int] = mapped_column(BigInteger, default=0)
    event_id: Mapped[str] = mapped_column(String(200))  # the latest refund event
    # The inbound rows of refunds still waiting for their purchase are updated when it arrives.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
