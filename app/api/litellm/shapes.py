"""The LiteLLM response bodies: a tier as a litellm_budget_table row, customers as LiteLLM's end users
followed by Tollgate's own fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from app.api.litellm.mapping import format_duration, format_usd
from app.api.litellm.schemas import REGIONS
from app.db import chunks, iso, now_utc
from app.extensions import db
from app.metering import periods
from app.metering.allowance import CUSTOMER, own_budget_window
from app.metering.pricing import usd_str
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier
from app.models.usage import PeriodCounter, UsageRecord


def budget_row(tier: UsageTier) -> dict[str, Any]:
    """A tier version as LiteLLM's litellm_budget_table row."""
    duration = format_duration(tier.period)
    model_budgets = {
        model: {
            "max_budget": format_usd(nusd),
            "budget_duration": duration,
            "tpm_limit": None,
            "rpm_limit": None,
        }
        for model, nusd in (tier.model_budgets_nusd or {}).items()
    }
    return {
        "budget_id": tier.key,
        "soft_budget": format_usd(tier.soft_budget_nusd),
        "max_budget": format_usd(tier.max_budget_nusd),
        "max_parallel_requests": tier.max_parallel_requests,
        "tpm_limit": tier.tpm_limit,
        "rpm_limit": tier.rpm_limit,
        "model_max_budget": model_budgets or None,
        "budget_duration": duration,
        "budget_reset_at": iso(_next_reset(tier)),
        "created_at": iso(tier.created_at),
        "usage_tier": {"key": tier.key, "version": tier.version},
    }


def _next_reset(tier: UsageTier) -> datetime | None:
    """When the budget's current period ends: the calendar boundary, or for an assignment-anchored
    tier the end of the period that started when the version was made (each customer's own runs
    from its assignment). None without a period."""
    return periods.window(periods.parse(tier.period), tier.anchor, tier.created_at, now_utc())[1]


def _has_budget(tier: UsageTier) -> bool:
    """Whether the tier carries anything LiteLLM's budget table shows."""
    return any(
        value is not None
        for value in (
            tier.max_budget_nusd,
            tier.soft_budget_nusd,
            tier.rpm_limit,
            tier.tpm_limit,
            tier.max_parallel_requests,
        )
    ) or bool(tier.model_budgets_nusd)


def _period_spends(project: Project, customers: list[Customer], now: datetime) -> dict[int, int]:
    """nano-USD spent in the current period by the customers whose tier has one."""
    periodic = [c for c in customers if c.period_end is not None and c.period_end > now]
    if not periodic:
        return {}
    stmt = (
        select(UsageRecord.customer_id, func.coalesce(func.sum(UsageRecord.cost_nusd), 0))
        .join(Customer, Customer.id == UsageRecord.customer_id)
        .where(
            Customer.project_id == project.id,
            Customer.period_end.is_not(None),
            UsageRecord.created_at >= Customer.period_start,
        )
        .group_by(UsageRecord.customer_id)
    )
    if len(periodic) <= 100:
        stmt = stmt.where(Customer.id.in_([c.id for c in periodic]))
    return {pk: int(total) for pk, total in db.session.execute(stmt) if pk is not None}


def _own_windows(customers: list[Customer], now: datetime) -> dict[int, tuple[datetime, datetime | None]]:
    """The current window of each customer's own budget (SPEC 4: from when it was set)."""
    out = {}
    for c in customers:
        if c.max_budget_nusd is not None:
            set_at = c.budget_set_at or c.period_start or c.created_at
            out[c.id] = own_budget_window(c.budget_duration, set_at, now)
    return out


def _own_spends(windows: dict[int, tuple[datetime, datetime | None]]) -> dict[int, int]:
    """nano-USD each own budget has counted in its current window."""
    out: dict[int, int] = {}
    ids = list(windows)
    for chunk in chunks(ids):
        rows = db.session.execute(
            select(PeriodCounter.customer_id, PeriodCounter.period_start, PeriodCounter.spend_nusd).where(
                PeriodCounter.scope == CUSTOMER, PeriodCounter.customer_id.in_(chunk)
            )
        )
        out.update((pk, int(spend)) for pk, start, spend in rows if windows[pk][0] == start)
    return out


def _empty_table(customer: Customer) -> dict[str, Any]:
    return {
        "budget_id": None,
        "soft_budget": None,
        "max_budget": None,
        "max_parallel_requests": None,
        "tpm_limit": None,
        "rpm_limit": None,
        "model_max_budget": None,
        "budget_duration": None,
        "budget_reset_at": None,
        "created_at": iso(customer.created_at),
        "usage_tier": None,
    }


def customer_shapes(project: Project, customers: list[Customer]) -> list[dict[str, Any]]:
    """Customers in LiteLLM's end-user shape, then Tollgate's own fields."""
    tiers = {t.id: t for t in db.session.scalars(select(UsageTier).where(UsageTier.project_id == project.id))}
    default = tiers.get(project.default_tier_id) if project.default_tier_id is not None else None
    now = now_utc()
    spends = _period_spends(project, customers, now)
    windows = _own_windows(customers, now)
    own_spends = _own_spends({pk: w for pk, w in windows.items() if w[1] is not None})
    out = []
    for customer in customers:
        tier = tiers.get(customer.tier_id) if customer.tier_id is not None else None
        # With a period, the current period's spend (0 once it ended, until it rolls over); else
        # lifetime. An own budget with a duration shows what its window has spent.
        spend = customer.spend_nusd if customer.period_end is None else spends.get(customer.id, 0)
        budget_id = tier.key if tier is not None and (default is None or tier.key != default.key) else None
        table = None
        if tier is not None and (budget_id is not None or _has_budget(tier)):
            table = budget_row(tier)
            table["budget_id"] = budget_id
            table["budget_reset_at"] = iso(customer.period_end)
        if customer.id in windows:  # the customer's own budget, on its own period
            table = table or _empty_table(customer)
            table["max_budget"] = format_usd(customer.max_budget_nusd)
            table["budget_duration"] = customer.budget_duration
            table["budget_reset_at"] = iso(windows[customer.id][1])
            if customer.budget_duration is not None:
                spend = own_spends.get(customer.id, 0)
        regions = list(customer.allowed_regions or [])
        out.append(
            {
                "user_id": customer.external_id,
                "blocked": customer.blocked,
                "alias": customer.alias,
                "spend": format_usd(spend),
                "allowed_model_region": regions[0] if len(regions) == 1 and regions[0] in REGIONS else None,
                "default_model": (customer.metadata_ or {}).get("default_model"),
                "budget_id": budget_id,
                "litellm_budget_table": table,
                "name": customer.name,
                "token_balance": customer.token_balance,
                "usage_tier": {"key": tier.key, "version": tier.version} if tier is not None else None,
                "max_budget_usd": None
                if customer.max_budget_nusd is None
                else usd_str(customer.max_budget_nusd),
                "budget_set_at": iso(customer.budget_set_at)
                if customer.max_budget_nusd is not None
                else None,
            }
        )
    return out


def customer_shape(project: Project, customer: Customer) -> dict[str, Any]:
    return customer_shapes(project, [customer])[0]
