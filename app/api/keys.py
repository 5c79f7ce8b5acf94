"""/api/keys (SPEC 6, 6.1): every key of the project with its own limits, allow-list and spend.

Read-only: keys are made and changed in the admin and through LiteLLM's /key routes. Secrets are
never shown; `prefix` is the key's first characters, as the admin shows it.
"""

from __future__ import annotations

from datetime import datetime

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from app.api.auth import require_admin
from app.api.errors import ApiError
from app.api.pagination import PageArgs, after, page
from app.db import iso, now_utc
from app.extensions import db
from app.keys.operations import spends
from app.metering.allowance import own_budget_window
from app.metering.pricing import usd_str
from app.models.api_key import ApiKey

bp = Blueprint("api_keys", __name__, url_prefix="/api/keys", description="API keys, their limits and spend")
bp.before_request(require_admin)


MAX_ID = 2**31 - 1


class KeyOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    scope = fields.String(required=True)
    prefix = fields.String(required=True)
    token = fields.String(required=True, metadata={"description": "SHA-256 of the secret (LiteLLM's token)"})
    created_at = fields.String(required=True)
    last_used_at = fields.String(allow_none=True)
    revoked_at = fields.String(allow_none=True)
    expires_at = fields.String(allow_none=True)
    blocked = fields.Boolean(required=True)
    models = fields.List(fields.String(), allow_none=True, metadata={"description": "null: every model"})
    metadata = fields.Dict(required=True)
    user_id = fields.String(allow_none=True)
    rpm_limit = fields.Integer(allow_none=True)
    tpm_limit = fields.Integer(allow_none=True)
    max_parallel_requests = fields.Integer(allow_none=True)
    max_budget_usd = fields.String(allow_none=True)
    budget_duration = fields.String(allow_none=True)
    budget_reset_at = fields.String(allow_none=True)
    spend_usd = fields.String(
        required=True,
        metadata={"description": "the budget window's spend when a budget is set, else lifetime"},
    )
    lifetime_spend_usd = fields.String(required=True)
    reserved_usd = fields.String(required=True, metadata={"description": "held by its calls in flight"})


class KeyList(Schema):
    data = fields.List(fields.Nested(KeyOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


def shapes(keys: list[ApiKey], now: datetime) -> list[dict]:
    figures = spends(db.session, keys, now)
    return [_shape(k, *figures[k.id], now) for k in keys]


def budget_reset_at(key: ApiKey, now: datetime) -> datetime | None:
    """When the key's budget window ends (None without a budget or a duration)."""
    if key.max_budget_nusd is None or key.budget_duration is None:
        return None
    return own_budget_window(key.budget_duration, key.budget_set_at or key.created_at, now)[1]


def _shape(key: ApiKey, spend: int, lifetime: int, now: datetime) -> dict:
    return {
        "id": key.id,
        "name": key.name,
        "scope": key.scope,
        "prefix": key.prefix,
        "token": key.key_hash,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
        "expires_at": iso(key.expires_at),
        "blocked": key.blocked,
        "models": list(key.models) if key.models else None,
        "metadata": dict(key.metadata_ or {}),
        "user_id": key.user_id,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "max_parallel_requests": key.max_parallel_requests,
        "max_budget_usd": None if key.max_budget_nusd is None else usd_str(key.max_budget_nusd),
        "budget_duration": key.budget_duration,
        "budget_reset_at": iso(budget_reset_at(key, now)),
        "spend_usd": usd_str(spend),
        "lifetime_spend_usd": usd_str(lifetime),
        "reserved_usd": usd_str(key.reserved_nusd),
    }


@bp.route("", methods=["GET"])
@bp.arguments(PageArgs, location="query")
@bp.response(200, KeyList)
def list_keys(args):
    rows = list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.project_id == g.project.id, ApiKey.id > after(args["cursor"]))
            .order_by(ApiKey.id)
            .limit(args["limit"] + 1)
        )
    )
    rows, cursor = page(rows, args["limit"])
    return {"data": shapes(rows, now_utc()), "next_cursor": cursor}


@bp.route("/<int:key_id>", methods=["GET"])
@bp.response(200, KeyOut)
def get_key(key_id: int):
    key = db.session.get(ApiKey, key_id) if key_id <= MAX_ID else None  # no id past PostgreSQL's integer
    if key is None or key.project_id != g.project.id:
        raise ApiError(404, f"No key {key_id} in this project.")
    return shapes([key], now_utc())[0]
