"""Metered usage: one record per upstream-served request, and per-period counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_customer_id_id", "customer_id", "id"),
        Index("ix_usage_records_project_created", "project_id", "created_at"),
        Index("ix_usage_records_api_key_id", "api_key_id"),
        # The calls LiteLLM's spend_tracked webhook has yet to report: a small index, emptied as sent.
        Index(
            "ix_usage_records_litellm_pending",
            "project_id",
            "id",
            sqlite_where=text("litellm_pending"),
            postgresql_where=text("litellm_pending"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    endpoint: Mapped[str] = mapped_column(String(32))
    model_requested: Mapped[str] = mapped_column(String(200))
    model_served: Mapped[str] = mapped_column(String(200))
    model_tier: Mapped[str] = mapped_column(String(16))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    region: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # Of the prompt tokens, those Anthropic read from or wrote to its prompt cache (own prices).
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # What the balance was debited. For a customer's call it falls short of total_tokens only when
    # the upstream reported more than the hold and a prepaid hard-capped balance reached 0: the
    # difference is tokens_unbilled (SPEC 5.2), a leak the operator should see.
    tokens_charged: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_unbilled: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    client_disconnected: Mapped[bool] = mapped_column(Boolean, default=False)
    overage: Mapped[bool] = mapped_column(Boolean, default=False)
    restricted_from: Mapped[str | None] = mapped_column(String(16))
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    # A customer call of a project with LiteLLM's webhook (SPEC 7.4): spend_tracked is owed. The
    # record is the outbox row: written in the call's settlement, cleared once the POST succeeded.
    litellm_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class PeriodCounter(Base):
    """Calls, tokens and spend of one customer in one period, per scope.

    scope is a model tier (`standard`…), `model:<name>` for per-model budgets, or `total`.
    """

    __tablename__ = "period_counters"
    __table_args__ = (UniqueConstraint("customer_id", "period_start", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tier_id: Mapped[int] = mapped_column(ForeignKey("usage_tiers.id"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    scope: Mapped[str] = mapped_column(String(216))
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    spend_nusd: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nusd: Mapped[int] = mapped_column(BigInteger, default=0)


# The refused calls SPEC 5.5 counts, in the order the dashboard stacks them: balance and limits first.
REFUSAL_CODES = (
    "insufficient_tokens",
    "usage_limit_reached",
    "budget_exceeded",
    "rate_limit_exceeded",
    "customer_blocked",
    "load_shed",
    "region_not_allowed",
    "limits_unavailable",
)


class RefusalCount(Base):
    """Refused calls of one customer (SPEC 5.5), per code and UTC hour, with the latest of them as an
    example (when, its message, the model asked for): the admin's Requests tab shows each row as one
    line among the served calls. Written in batches by each process's refusal counter, never on the
    refused call's own path."""

    __tablename__ = "refusal_counts"
    __table_args__ = (
        UniqueConstraint("customer_id", "hour", "code"),
        Index("ix_refusal_counts_hour", "hour"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    code: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    # The latest refusal counted in this row; null only on rows written before examples were kept.
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
