"""API key operations. The raw key leaves this module once, at creation."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import stamp
from app.db import MAX_ROW_ID, chunks, now_utc
from app.errors import Conflict, Invalid
from app.metering import periods
from app.metering.key_budget import window_spend
from app.models.api_key import SCOPES, ApiKey, hash_key
from app.models.project import Project
from app.models.usage import UsageRecord

MIN_LITERAL = 16


def new_secret() -> str:
    """`tg-` and 40 url-safe characters (SPEC 1)."""
    return "tg-" + secrets.token_urlsafe(30)


def create_key(
    session: Session, project: Project, name: str, scope: str, raw: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret, which is never stored in the clear."""
    if scope not in SCOPES:
        raise Invalid(f"scope must be one of {', '.join(SCOPES)}", "scope")
    if not name.strip():
        raise Invalid("name must not be empty", "name")
    raw = raw or new_secret()
    if len(raw) < MIN_LITERAL:
        raise Invalid(f"a key must be at least {MIN_LITERAL} characters", "key")
    digest = hash_key(raw)
    if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) is not None:
        raise Conflict("that key is already in use", "key")
    key = ApiKey(project_id=project.id, name=name.strip(), scope=scope, prefix=raw[:7], key_hash=digest)
    session.add(key)
    stamp.bump(session)
    session.flush()
    return key, raw


def revoke_key(session: Session, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = now_utc()
        stamp.bump(session)
        session.flush()


def find_by_secret(session: Session, raw: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw)))


# What configure_key may change (LiteLLM's virtual-key settings, SPEC 6.1), besides `name`.
LIMITS = ("rpm_limit", "tpm_limit", "max_parallel_requests")
SETTINGS = (
    "name",
    "expires_at",
    "blocked",
    "models",
    "metadata",
    "user_id",
    *LIMITS,
    "max_budget_nusd",
    "budget_duration",
)


def configure_key(session: Session, key: ApiKey, changes: dict[str, Any], now: datetime) -> ApiKey:
    """Change a key's own limits and settings; every worker applies them within a second (the config
    stamp), its $ budget to the very next call (read where it is reserved)."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    if "name" in changes and not str(changes["name"] or "").strip():
        raise Invalid("name must not be empty", "name")
    for name in LIMITS:
        value = changes.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ROW_ID
        ):
            # The columns are 32-bit: past that no row can hold it (a 400, not a database error).
            raise Invalid(f"{name} must be a whole number from 1 to {MAX_ROW_ID}, or null", name)
    models = changes.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise Invalid("models must be a list of model names", "models")
    for name, value in changes.items():
        if name == "models":
            value = value or None  # an empty allow-list means every model, as in LiteLLM
        if name not in ("max_budget_nusd", "budget_duration"):
            setattr(key, "metadata_" if name == "metadata" else name, value)
    if "max_budget_nusd" in changes or "budget_duration" in changes:
        _set_budget(
            session,
            key,
            changes.get("max_budget_nusd", key.max_budget_nusd),
            changes.get("budget_duration", key.budget_duration),
            now,
        )
    stamp.bump(session)
    session.flush()
    return key


def _set_budget(
    session: Session, key: ApiKey, budget: int | None, duration: str | None, now: datetime
) -> None:
    """A budget's window runs from when it was set (or its duration changed); a new amount alone
    keeps the window and its spend. What the key spent before does not go away: a budget set on a
    key that has been used starts from the key's spend so far."""
    if budget is None and duration is not None and key.max_budget_nusd is None:
        raise Invalid(
            "budget_duration is the period of the key's max_budget: pass max_budget with it",
            "budget_duration",
        )
    if budget is None:
        key.max_budget_nusd = key.budget_duration = key.budget_set_at = key.budget_start = None
        key.budget_spend_nusd = 0
        return
    if budget < 0:
        raise Invalid("max_budget must not be negative", "max_budget")
    try:
        duration = periods.duration(duration)
    except ValueError as exc:
        raise Invalid(f"budget_duration: {exc}", "budget_duration") from exc
    if key.max_budget_nusd is None or duration != key.budget_duration:
        spent = lifetime_spends(session, [key.id]).get(key.id, 0) if key.max_budget_nusd is None else 0
        key.budget_set_at, key.budget_duration = now, duration
        key.budget_start, key.budget_spend_nusd = window_spend(key, now)[0], spent
    key.max_budget_nusd = budget


def expiry(duration: str | None, now: datetime) -> datetime | None:
    """LiteLLM's key `duration` (`30s`, `30m`, `30h`, `30d`, `1mo`) as the moment the key expires."""
    if duration is None:
        return None
    try:
        period = periods.parse(duration)
    except ValueError as exc:
        raise Invalid(f"duration: {exc}", "duration") from exc
    if period.unit == periods.NONE:
        return None
    return periods.window(period, periods.ASSIGNMENT, now, now)[1]


def set_blocked(session: Session, key: ApiKey, blocked: bool) -> None:
    if key.blocked != blocked:
        key.blocked = blocked
        stamp.bump(session)
        session.flush()


def lifetime_spends(session: Session, key_ids: Sequence[int]) -> dict[int, int]:
    """nano-USD each key's calls have cost, from their usage records."""
    out: dict[int, int] = {}
    for chunk in chunks(key_ids):
        rows = session.execute(
            select(UsageRecord.api_key_id, func.coalesce(func.sum(UsageRecord.cost_nusd), 0))
            .where(UsageRecord.api_key_id.in_(chunk))
            .group_by(UsageRecord.api_key_id)
        )
        out.update((key_id, int(total)) for key_id, total in rows)
    return out


def spends(session: Session, keys: Sequence[ApiKey], now: datetime) -> dict[int, tuple[int, int]]:
    """(spend, lifetime spend) of each key in nano-USD. Spend is as LiteLLM shows it: the budget
    window's when the key has a budget (exact: the counter its calls reserve against), else the
    key's lifetime spend, from its usage records."""
    lifetime = lifetime_spends(session, [k.id for k in keys])
    return {
        k.id: (
            window_spend(k, now)[1] if k.max_budget_nusd is not None else lifetime.get(k.id, 0),
            lifetime.get(k.id, 0),
        )
        for k in keys
    }
