"""Validating and applying project settings (SPEC 6 "settings")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import stamp
from app.errors import Invalid
from app.events import targets
from app.models.project import SHEDDING_LEVELS, SHEDDING_TIERS, Project
from app.models.tier import UsageTier
from app.portal import origins
from app.tiers.operations import latest_version

REGION_MAX = 32


def _tokens(value: object, name: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise Invalid(f"{name} must be a whole number of tokens, 0 or more", name)
    return value


def _webhook_url(value: object) -> str | None:
    """LiteLLM's webhook target: checked like a subscription's (SPEC 7.2); empty turns it off."""
    if not value:
        return None
    try:
        targets.check(str(value))
    except targets.TargetRefused as exc:
        raise Invalid(f"litellm_webhook_url: {exc}", "litellm_webhook_url") from exc
    return str(value)


def _approval(value: object) -> int:
    tokens = _tokens(value, "approval_tokens")
    if tokens == 0:
        raise Invalid(
            "approval_tokens must be at least 1 (null: Approve asks for an amount)", "approval_tokens"
        )
    return tokens


def _regions(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(r, str) and 0 < len(r) <= REGION_MAX for r in value):
        raise Invalid("default_allowed_regions must be a list of region names", "default_allowed_regions")
    return value


def apply_settings(session: Session, project: Project, changes: dict[str, Any]) -> None:
    """Set the given settings, validating each; unknown names are refused."""
    handlers = {
        "new_customer_initial_tokens": lambda v: setattr(
            project, "new_customer_initial_tokens", _tokens(v, "new_customer_initial_tokens")
        ),
        "low_balance_tokens": lambda v: setattr(
            project, "low_balance_tokens", None if v is None else _tokens(v, "low_balance_tokens")
        ),
        "default_allowed_regions": lambda v: setattr(project, "default_allowed_regions", _regions(v)),
        "default_shedding_tier": lambda v: setattr(
            project, "default_shedding_tier", _choice(v, SHEDDING_TIERS, "default_shedding_tier")
        ),
        "shedding_level": lambda v: setattr(
            project, "shedding_level", _choice(v, SHEDDING_LEVELS, "shedding_level")
        ),
        "require_customer": lambda v: setattr(project, "require_customer", _flag(v, "require_customer")),
        "auto_shedding": lambda v: setattr(project, "auto_shedding", _flag(v, "auto_shedding")),
        "capacity": lambda v: setattr(project, "capacity", None if v is None else _capacity(v)),
        "default_tier": lambda v: setattr(project, "default_tier_id", _tier_id(session, project, v)),
        "litellm_webhook_url": lambda v: setattr(project, "litellm_webhook_url", _webhook_url(v)),
        "approval_tokens": lambda v: setattr(project, "approval_tokens", None if v is None else _approval(v)),
        "portal_frame_origins": lambda v: setattr(project, "portal_frame_origins", origins.check(v)),
    }
    for name, value in changes.items():
        if name not in handlers:
            raise Invalid(f"unknown setting {name!r}", name)
        handlers[name](value)
    stamp.bump(session)
    session.flush()


def _choice(value: object, options: tuple[str, ...], name: str) -> str:
    if value not in options:
        raise Invalid(f"{name} must be one of {', '.join(options)}", name)
    return str(value)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false", name)
    return value


def _capacity(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Invalid("capacity must be a whole number of at least 1", "capacity")
    return value


def _tier_id(session: Session, project: Project, value: object) -> int:
    """A bare key means that key's latest version; {key, version} names one version."""
    if isinstance(value, str):
        key, version = value, None
    elif isinstance(value, dict) and isinstance(value.get("key"), str):
        key, version = value["key"], value.get("version")
    else:
        raise Invalid("default_tier must be a tier key or {key, version}", "default_tier")
    if version is None:
        tier = latest_version(session, project, key)
    else:
        tier = session.scalar(
            select(UsageTier).where(
                UsageTier.project_id == project.id, UsageTier.key == key, UsageTier.version == version
            )
        )
    if tier is None:
        raise Invalid(f"default_tier names an unknown tier {value!r}", "default_tier")
    return tier.id
