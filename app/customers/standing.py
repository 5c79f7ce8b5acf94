"""Where a customer stands this period: use per model tier against its tier's limits, overage,
spend, balance and next replenishment. Shared by the API and the admin's Usage & Limits tab."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.db import iso
from app.metering.pricing import usd_str
from app.models.customer import Customer
from app.models.tier import MODEL_TIERS, UsageTier
from app.models.usage import UsageRecord


@dataclass(frozen=True)
class TierUse:
    calls: int
    tokens: int
    limit_calls: int | None
    limit_tokens: int | None
    overage_calls: int
    overage_tokens: int


@dataclass(frozen=True)
class Standing:
    tier: UsageTier | None
    period_start: datetime | None
    period_end: datetime | None
    next_replenishment_at: datetime | None
    spend_nusd: int
    model_tiers: dict[str, TierUse]


def _use(session: Session, customer: Customer) -> dict[str, tuple[int, int, int, int, int]]:
    """(calls, tokens, overage calls, overage tokens, spend) per model tier since the period began."""
    served = UsageRecord.status == 200
    stmt = (
        select(
            UsageRecord.model_tier,
            func.sum(case((served, 1), else_=0)),
            func.coalesce(func.sum(UsageRecord.total_tokens), 0),
            func.sum(case((UsageRecord.overage, 1), else_=0)),
            func.coalesce(func.sum(case((UsageRecord.overage, UsageRecord.total_tokens), else_=0)), 0),
            func.coalesce(func.sum(UsageRecord.cost_nusd), 0),
        )
        .where(UsageRecord.customer_id == customer.id)
        .group_by(UsageRecord.model_tier)
    )
    if customer.period_start is not None:
        stmt = stmt.where(UsageRecord.created_at >= customer.period_start)
    return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in session.execute(stmt)}  # type: ignore[misc]


def standing(session: Session, customer: Customer) -> Standing:
    tier = session.get(UsageTier, customer.tier_id) if customer.tier_id else None
    used = _use(session, customer)
    limits = (tier.limits if tier else None) or {}
    model_tiers = {}
    for name in MODEL_TIERS:
        calls, tokens, over_calls, over_tokens, _ = used.get(name, (0, 0, 0, 0, 0))
        limit = limits.get(name) or {}
        model_tiers[name] = TierUse(
            calls, tokens, limit.get("calls"), limit.get("tokens"), over_calls, over_tokens
        )
    replenishes = tier is not None and bool(tier.replenish_tokens) and customer.period_end is not None
    return Standing(
        tier=tier,
        period_start=customer.period_start,
        period_end=customer.period_end,
        next_replenishment_at=customer.period_end if replenishes else None,
        spend_nusd=sum(u[4] for u in used.values()),
        model_tiers=model_tiers,
    )


def usage_shape(customer: Customer, now: Standing) -> dict:
    """SPEC 6's usage shape: the API's GET /api/customers/{id}/usage and the usage page's JSON."""
    tier = now.tier
    return {
        "period": {"start": iso(now.period_start), "end": iso(now.period_end)},
        "tier": {"key": tier.key, "version": tier.version} if tier else None,
        "token_balance": customer.token_balance,
        "next_replenishment_at": iso(now.next_replenishment_at),
        "spend_usd": usd_str(now.spend_nusd),
        "max_budget_usd": usd_str(tier.max_budget_nusd)
        if tier and tier.max_budget_nusd is not None
        else None,
        "model_tiers": {name: vars(use) for name, use in now.model_tiers.items()},
    }
