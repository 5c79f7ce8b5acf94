"""Usage tier operations (SPEC 4). Operations flush; the caller commits."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import stamp
from app.errors import Conflict, Invalid
from app.metering.pricing import MoneyError, to_nusd
from app.models.project import Project
from app.models.tier import ANCHORS, MODEL_TIERS, ON_LIMIT, REPLENISH_MODES, UsageTier

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PERIOD = re.compile(r"^(none|hour|day|week|month|year|[1-9][0-9]{0,5}(s|m|h|d|mo))$")
DEFAULT_KEY = "default"
DEFAULT_NAME = "Default New Customer Tier"


def ensure_default_tier(session: Session, project: Project) -> UsageTier:
    """Tier `default` v1: prepaid, period none, no limits, block, hard_cap, 1024 reserved."""
    tier = session.scalar(
        select(UsageTier).where(
            UsageTier.project_id == project.id, UsageTier.key == DEFAULT_KEY, UsageTier.version == 1
        )
    )
    if tier is None:
        tier = create_tier(session, project, {"key": DEFAULT_KEY, "name": DEFAULT_NAME})
    return tier


def latest_version(session: Session, project: Project, key: str) -> UsageTier | None:
    return session.scalar(
        select(UsageTier)
        .where(UsageTier.project_id == project.id, UsageTier.key == key)
        .order_by(UsageTier.version.desc())
        .limit(1)
    )


def create_tier(session: Session, project: Project, spec: dict[str, Any]) -> UsageTier:
    """Version 1 of a new tier, from SPEC 4 fields (USD amounts as decimals)."""
    values = tier_values(spec)
    if session.scalar(
        select(func.count())
        .select_from(UsageTier)
        .where(UsageTier.project_id == project.id, UsageTier.key == values["key"])
    ):
        raise Conflict(f"tier {values['key']!r} already exists", "key")
    tier = UsageTier(project_id=project.id, version=1, **values)
    session.add(tier)
    stamp.bump(session)
    session.flush()
    return tier


def _count(spec: dict, name: str, default: int | None = None, minimum: int = 0) -> int | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or value >= 2**62:
        raise Invalid(f"{name} must be a whole number of at least {minimum}", name)
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
    key = spec.get("key")
    if not isinstance(key, str) or not KEY.match(key):
        raise Invalid("key must be a slug: lower-case letters, digits, '-' and '_'", "key")
    period = spec.get("period", "none")
    if not isinstance(period, str) or not PERIOD.match(period):
        raise Invalid("period must be none, hour, day, week, month, year or <n>s|m|h|d|mo", "period")
    on_limit = _choice(spec, "on_limit", ON_LIMIT, "block")
    restrict_to = spec.get("restrict_to")
    if restrict_to is not None and restrict_to not in MODEL_TIERS:
        raise Invalid(f"restrict_to must be one of {', '.join(MODEL_TIERS)}", "restrict_to")
    if on_limit == "restrict" and restrict_to is None:
        raise Invalid("on_limit restrict needs restrict_to", "restrict_to")
    for flag in ("prepaid", "hard_cap"):
        if not isinstance(spec.get(flag, True), bool):
            raise Invalid(f"{flag} must be true or false", flag)
    name = spec.get("name") or key
    if not isinstance(name, str):
        raise Invalid("name must be a string", "name")
    return dict(
        key=key,
        name=name,
        description=str(spec.get("description") or ""),
        prepaid=spec.get("prepaid", True),
        period=period,
        anchor=_choice(spec, "anchor", ANCHORS, "calendar"),
        replenish_tokens=_count(spec, "replenish_tokens"),
        replenish_mode=_choice(spec, "replenish_mode", REPLENISH_MODES, "reset"),
        max_balance=_count(spec, "max_balance"),
        limits=_limits(spec.get("limits")),
        on_limit=on_limit,
        restrict_to=restrict_to,
        max_budget_nusd=_usd(spec, "max_budget_usd"),
        soft_budget_nusd=_usd(spec, "soft_budget_usd"),
        model_budgets_nusd=_model_budgets(spec.get("model_budgets_usd")),
        rpm_limit=_count(spec, "rpm_limit", minimum=1),
        tpm_limit=_count(spec, "tpm_limit", minimum=1),
        max_parallel_requests=_count(spec, "max_parallel_requests", minimum=1),
        default_reserve_tokens=_count(spec, "default_reserve_tokens", 1024, minimum=1),
        hard_cap=spec.get("hard_cap", True),
    )
