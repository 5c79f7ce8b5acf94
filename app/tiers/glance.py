"""A tier version at a glance: its rules as short lines people read on the tier list, the version
page and after a migrate, without opening the form.

Words follow SPEC 10: a limit of 0 is "none allowed" (every such call is refused), a missing limit
"no limit".
"""

from __future__ import annotations

from dataclasses import dataclass

from app.formatting import limit, tokens, usd
from app.models.tier import MODEL_TIERS, UsageTier

WHEN_FULL = {"block": "Block the call", "allow": "Allow it, track the overage"}


@dataclass(frozen=True)
class LimitLine:
    model_tier: str  # as people write it: "Super premium"
    text: str  # "1,000 calls · no token limit", "none allowed", "no limit"
    refused: bool  # a limit of 0: every call on this model tier is refused


@dataclass(frozen=True)
class Glance:
    limits: list[LimitLine]
    unlimited: bool  # no model tier has a limit
    period: str
    replenishment: str
    plan: str
    when_full: str
    extras: list[str]  # budgets and rates, only those set


def model_tier_name(model_tier: str) -> str:
    return model_tier.replace("_", " ").capitalize()


def limit_text(calls: int | None, tokens_: int | None) -> str:
    """One model tier's limits per period: "none allowed" if either is 0, "no limit" if both are null."""
    if calls == 0 or tokens_ == 0:
        return "none allowed"
    if calls is None and tokens_ is None:
        return "no limit"
    return " · ".join(
        (
            f"{limit(calls)} call{'' if calls == 1 else 's'}" if calls is not None else "no call limit",
            f"{limit(tokens_)} tokens" if tokens_ is not None else "no token limit",
        )
    )


def _limits(tier: UsageTier) -> list[LimitLine]:
    lines = []
    for model_tier in MODEL_TIERS:
        row = (tier.limits or {}).get(model_tier) or {}
        calls, tokens_ = row.get("calls"), row.get("tokens")
        lines.append(
            LimitLine(model_tier_name(model_tier), limit_text(calls, tokens_), 0 in (calls, tokens_))
        )
    return lines


def _period(tier: UsageTier) -> str:
    if tier.period == "none":
        return "No period: use counts for as long as a customer is on this version"
    return f"Per {tier.period}, {'from assignment' if tier.anchor == 'assignment' else 'calendar (UTC)'}"


def _replenishment(tier: UsageTier) -> str:
    if tier.replenish_tokens is None:
        return "No replenishment"
    amount = tokens(tier.replenish_tokens)
    if tier.replenish_mode == "reset":
        return f"Balance reset to {amount} tokens each period"
    cap = f", up to {tokens(tier.max_balance)}" if tier.max_balance is not None else ""
    return f"{amount} tokens added each period{cap}"


def _extras(tier: UsageTier) -> list[str]:
    budgets = len(tier.model_budgets_nusd or {})
    shown = [
        (tier.max_budget_nusd, lambda: f"{usd(tier.max_budget_nusd)} budget per period"),
        (tier.soft_budget_nusd, lambda: f"{usd(tier.soft_budget_nusd)} soft budget"),
        (budgets or None, lambda: f"{budgets} model budget{'' if budgets == 1 else 's'}"),
        (tier.rpm_limit, lambda: f"{tier.rpm_limit:,} requests/min"),
        (tier.tpm_limit, lambda: f"{tokens(tier.tpm_limit)} tokens/min"),
        (tier.max_parallel_requests, lambda: f"{tier.max_parallel_requests:,} in parallel"),
    ]
    return [text() for value, text in shown if value is not None]


def glance(tier: UsageTier) -> Glance:
    """The version's rules in short lines."""
    limits = _limits(tier)
    when_full = WHEN_FULL.get(tier.on_limit) or f"Restrict to {(tier.restrict_to or '').replace('_', ' ')}"
    return Glance(
        limits=limits,
        unlimited=all(line.text == "no limit" for line in limits),
        period=_period(tier),
        replenishment=_replenishment(tier),
        plan=f"{'Prepaid' if tier.prepaid else 'Postpaid'} · {'' if tier.hard_cap else 'no '}hard cap",
        when_full=when_full,
        extras=_extras(tier),
    )
