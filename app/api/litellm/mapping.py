"""LiteLLM's budget fields as Tollgate's tier fields, and back: USD numbers and nano-USD,
budget_duration and periods, a budget body as SPEC 4 tier fields, a budget_id as its tier."""

from __future__ import annotations

import math
from typing import Any

from app.api.litellm.blueprint import LiteLLMError
from app.extensions import db
from app.metering import periods
from app.metering.pricing import MoneyError, to_nusd, to_usd, usd_str
from app.models.project import Project
from app.models.tier import UsageTier
from app.tiers.operations import latest_version


def parse_usd(name: str, value: object) -> int | None:
    """A LiteLLM USD amount (a JSON number) as nano-USD; 400 with LiteLLM's message when invalid."""
    if value is None:
        return None
    try:
        return to_nusd(value)
    except MoneyError as exc:
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (not math.isfinite(value) or value < 0)
        ):
            raise LiteLLMError(
                400, f"{name} must be a non-negative finite number. Received: {value}", name
            ) from exc
        raise LiteLLMError(400, f"{name}: {exc}", name) from exc


def parse_duration(duration: str | None) -> str:
    """LiteLLM's budget_duration as a tier period; the forms (`30s`…`1mo`) are valid periods."""
    if duration is None:
        return periods.NONE
    try:
        return str(periods.parse(duration))
    except ValueError as exc:
        raise LiteLLMError(400, f"budget_duration: {exc}", "budget_duration") from exc


def format_duration(period: str) -> str | None:
    return None if period == periods.NONE else period


def format_usd(nusd: int | None) -> float | None:
    return None if nusd is None else float(to_usd(nusd))


def _model_budgets(raw: dict | None, period: str) -> dict[str, str]:
    """model_max_budget {model: {max_budget, budget_duration, tpm_limit, rpm_limit}} → {model: usd}.

    Tollgate's per-model budgets run on the budget's own period and have no per-model rate limits:
    a different budget_duration or a per-model tpm/rpm limit is refused rather than ignored.
    """
    out: dict[str, str] = {}
    for model, config in (raw or {}).items():
        where = f"model_max_budget.{model}"
        if isinstance(config, dict):
            amount = config.get("max_budget", config.get("budget_limit"))
            for limit in ("tpm_limit", "rpm_limit"):
                if config.get(limit) is not None:
                    raise LiteLLMError(
                        400,
                        f"{where}.{limit}: per-model rate limits are not supported; set tpm_limit and "
                        "rpm_limit on the budget itself",
                        "model_max_budget",
                    )
            duration = config.get("budget_duration")
            if duration is not None and parse_duration(duration) != period:
                raise LiteLLMError(
                    400,
                    f"{where}.budget_duration: per-model budgets run on the budget's budget_duration "
                    f"({format_duration(period) or 'none'}); {duration!r} differs",
                    "model_max_budget",
                )
        elif isinstance(config, int | float | str) and not isinstance(config, bool):
            amount = config
        else:
            raise LiteLLMError(400, f'{where}: expected {{"max_budget": <USD>}}', "model_max_budget")
        nusd = parse_usd(f"{where}.max_budget", amount)
        if nusd is not None:
            out[model] = usd_str(nusd)
    return out


def tier_changes(args: dict, current_period: str) -> dict[str, Any]:
    """The SPEC 4 tier fields that the LiteLLM budget fields present in `args` set."""
    spec: dict[str, Any] = {}
    if "budget_duration" in args:
        spec["period"] = parse_duration(args["budget_duration"])
    for litellm_name, tier_name in (("max_budget", "max_budget_usd"), ("soft_budget", "soft_budget_usd")):
        if litellm_name in args:
            nusd = parse_usd(litellm_name, args[litellm_name])
            spec[tier_name] = None if nusd is None else usd_str(nusd)
    for name in ("rpm_limit", "tpm_limit", "max_parallel_requests"):
        if name in args:
            spec[name] = args[name]
    if "model_max_budget" in args:
        spec["model_budgets_usd"] = _model_budgets(
            args["model_max_budget"], spec.get("period", current_period)
        )
    return spec


def find_budget(project: Project, budget_id: str) -> UsageTier:
    tier = latest_version(db.session, project, budget_id)
    if tier is None:
        raise LiteLLMError(404, f"Budget id={budget_id} does not exist in db", "budget_id")
    return tier
