"""Tier specs: validating SPEC 4 fields into column values, and a tier back into its SPEC 4 form."""

from __future__ import annotations

import re
from typing import Any

from app.errors import Invalid
from app.metering import periods
from app.metering.pricing import MoneyError, to_nusd, usd_str
from app.models.tier import ANCHORS, MODEL_TIERS, ON_LIMIT, REPLENISH_MODES, UsageTier

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FIELDS = (
    "key",
    "name",
    "description",
    "prepaid",
    "period",
    "anchor",
    "replenish_tokens",
    "replenish_mode",
    "max_balance",
    "limits",
    "on_limit",
    "restrict_to",
    "max_budget_usd",
    "soft_budget_usd",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "model_budgets_usd",
    "default_reserve_tokens",
    "hard_cap",
)


# Column sizes: token counts are BIGINT, per-minute and in-flight call counts INTEGER.
BIG = 2**62
SMALL = 2**31 - 1


def _count(
    spec: dict, name: str, default: int | None = None, minimum: int = 0, maximum: int = BIG
) -> int | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise Invalid(f"{name} must be a whole number from {minimum} to {maximum}", name)
    return value


def _usd(spec: dict, name: str) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    try:
        return to_nusd(value)
    except MoneyError as exc:
        raise Invalid(f"{name}: {exc}", name) from exc


def _choice(spec: dict, name: str, options: tuple[str, ...], default: str) -> str:
    value = spec.get(name, default)
    if value not in options:
        raise Invalid(f"{name} must be one of {', '.join(options)}", name)
    return value


def _limits(raw: object) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Invalid("limits must map model tiers to {calls, tokens}", "limits")
    out = {}
    for model_tier, limit in raw.items():
        if model_tier not in MODEL_TIERS:
            raise Invalid(f"unknown model tier {model_tier!r} in limits", "limits")
        if not isinstance(limit, dict) or set(limit) - {"calls", "tokens"}:
            raise Invalid(f"limits.{model_tier} must be {{calls, tokens}}", "limits")
        out[model_tier] = {"calls": _count(limit, "calls"), "tokens": _count(limit, "tokens")}
    return out


def _model_budgets(raw: object) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k for k in raw):
        raise Invalid("model_budgets_usd must map model names to USD amounts", "model_budgets_usd")
    return {model: _usd({"model_budgets_usd": usd}, "model_budgets_usd") for model, usd in raw.items()}


def tier_values(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate SPEC 4 fields into column values; refuses anything malformed, naming the field."""
    unknown = set(spec) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown tier fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    key = spec.get("key")
    if not isinstance(key, str) or not KEY.match(key):
        raise Invalid("key must be a slug: lower-case letters, digits, '-' and '_'", "key")
    period = spec.get("period", "none")
    try:
        parsed = periods.parse(period)
    except ValueError as exc:
        raise Invalid(f"period: {exc}", "period") from exc
    # Stored resolved: calendar units default to the calendar, fixed lengths to the assignment (SPEC 4).
    anchor = _choice(spec, "anchor", ANCHORS, periods.effective_anchor(parsed, None))
    on_limit = _choice(spec, "on_limit", ON_LIMIT, "block")
    restrict_to = spec.get("restrict_to")
    if restrict_to is not None and restrict_to not in MODEL_TIERS:
        raise Invalid(f"restrict_to must be one of {', '.join(MODEL_TIERS)}", "restrict_to")
    if on_limit == "restrict" and restrict_to is None:
        raise Invalid("on_limit restrict needs restrict_to", "restrict_to")
    if on_limit != "restrict" and restrict_to is not None:
        raise Invalid("restrict_to is used only with on_limit restrict", "restrict_to")
    for flag in ("prepaid", "hard_cap"):
        if not isinstance(spec.get(flag, True), bool):
            raise Invalid(f"{flag} must be true or false", flag)
    name = spec.get("name") or key
    if not isinstance(name, str):
        raise Invalid("name must be a string", "name")
    values = dict(
        key=key,
        name=name,
        description=str(spec.get("description") or ""),
        prepaid=spec.get("prepaid", True),
        period=period,
        anchor=anchor,
        replenish_tokens=_count(spec, "replenish_tokens"),
        replenish_mode=_choice(spec, "replenish_mode", REPLENISH_MODES, "reset"),
        max_balance=_count(spec, "max_balance"),
        limits=_limits(spec.get("limits")),
        on_limit=on_limit,
        restrict_to=restrict_to,
        max_budget_nusd=_usd(spec, "max_budget_usd"),
        soft_budget_nusd=_usd(spec, "soft_budget_usd"),
        model_budgets_nusd=_model_budgets(spec.get("model_budgets_usd")),
        rpm_limit=_count(spec, "rpm_limit", minimum=1, maximum=SMALL),
        tpm_limit=_count(spec, "tpm_limit", minimum=1),
        max_parallel_requests=_count(spec, "max_parallel_requests", minimum=1, maximum=SMALL),
        default_reserve_tokens=_count(spec, "default_reserve_tokens", 1024, minimum=1, maximum=SMALL),
        hard_cap=spec.get("hard_cap", True),
    )
    _check_together(values)
    return values


def _check_together(values: dict[str, Any]) -> None:
    """Fields that are each valid but contradict one another."""
    if values["replenish_tokens"] is not None and values["period"] == "none":
        raise Invalid("replenish_tokens needs a period: with period none nothing is replenished", "period")
    soft, hard = values["soft_budget_nusd"], values["max_budget_nusd"]
    if soft is not None and hard is not None and soft > hard:
        raise Invalid("soft_budget_usd must not be above max_budget_usd", "soft_budget_usd")


def _usd_or_none(nusd: int | None) -> str | None:
    return None if nusd is None else usd_str(nusd)


def tier_spec(tier: UsageTier) -> dict[str, Any]:
    """A tier version in its SPEC 4 form (USD as exact decimal strings)."""
    return {
        "key": tier.key,
        "version": tier.version,
        "name": tier.name,
        "description": tier.description,
        "prepaid": tier.prepaid,
        "period": tier.period,
        "anchor": tier.anchor,
        "replenish_tokens": tier.replenish_tokens,
        "replenish_mode": tier.replenish_mode,
        "max_balance": tier.max_balance,
        "limits": tier.limits,
        "on_limit": tier.on_limit,
        "restrict_to": tier.restrict_to,
        "max_budget_usd": _usd_or_none(tier.max_budget_nusd),
        "soft_budget_usd": _usd_or_none(tier.soft_budget_nusd),
        "model_budgets_usd": {m: usd_str(n) for m, n in (tier.model_budgets_nusd or {}).items()},
        "rpm_limit": tier.rpm_limit,
        "tpm_limit": tier.tpm_limit,
        "max_parallel_requests": tier.max_parallel_requests,
        "default_reserve_tokens": tier.default_reserve_tokens,
        "hard_cap": tier.hard_cap,
        "locked": tier.locked,
    }
