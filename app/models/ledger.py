"""Ledger entries: every balance change that is not metered usage (SPEC 5.4). Immutable."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

KINDS = ("initial_grant", "purchase", "replenishment", "adjustment", "refund", "set_balance")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    # The idempotency key makes a replayed credit (Stripe retry, API replay, scheduler rerun,
    # two racing replenishments) fail on the constraint instead of crediting twice.
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key"),
        Index("ix_ledger_entries_customer_created", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
