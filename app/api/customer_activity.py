"""A customer's period usage against its limits, its ledger, its requests and its refused calls
(SPEC 6)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from app.api.auth import require_admin
from app.api.customers import LedgerEntryOut, TierRefOut, entry_shape
from app.api.pagination import PageArgs, newest_first
from app.customers.operations import find_customer
from app.customers.refusals import refusals_of
from app.customers.standing import standing, usage_shape
from app.db import iso, now_utc
from app.extensions import db
from app.metering.pricing import usd_str
from app.models.ledger import LedgerEntry
from app.models.usage import UsageRecord

bp = Blueprint(
    "api_customer_activity", __name__, url_prefix="/api/customers", description="Customer activity"
)
bp.before_request(require_admin)


class ModelTierUse(Schema):
    calls = fields.Integer(required=True)
    tokens = fields.Integer(required=True)
    limit_calls = fields.Integer(allow_none=True, required=True)
    limit_tokens = fields.Integer(allow_none=True, required=True)
    overage_calls = fields.Integer(required=True)
    overage_tokens = fields.Integer(required=True)


class Period(Schema):
    start = fields.String(allow_none=True, required=True)
    end = fields.String(allow_none=True, required=True)


class UsageOut(Schema):
    period = fields.Nested(Period, required=True)
    tier = fields.Nested(TierRefOut, allow_none=True, required=True)
    token_balance = fields.Integer(required=True)
    next_replenishment_at = fields.String(allow_none=True, required=True)
    spend_usd = fields.String(required=True)
    max_budget_usd = fields.String(allow_none=True, required=True)
    model_tiers = fields.Dict(keys=fields.String(), values=fields.Nested(ModelTierUse), required=True)


class LedgerList(Schema):
    data = fields.List(fields.Nested(LedgerEntryOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class RequestOut(Schema):
    id = fields.String(required=True)
    endpoint = fields.String(required=True)
    model_requested = fields.String(required=True)
    model_served = fields.String(required=True)
    model_tier = fields.String(required=True)
    region = fields.String(allow_none=True, required=True)
    status = fields.Integer(required=True)
    stream = fields.Boolean(required=True)
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)
    cache_read_tokens = fields.Integer(
        required=True, metadata={"description": "Of the prompt tokens, those read from Anthropic's cache"}
    )
    cache_write_tokens = fields.Integer(
        required=True, metadata={"description": "Of the prompt tokens, those written to Anthropic's cache"}
    )
    tokens_charged = fields.Integer(required=True)
    cost_usd = fields.String(required=True)
    overage = fields.Boolean(required=True)
    restricted_from = fields.String(allow_none=True, required=True)
    latency_ms = fields.Integer(required=True)
    created_at = fields.String(required=True)


class RequestList(Schema):
    data = fields.List(fields.Nested(RequestOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


@bp.route("/<customer_id>/usage")
@bp.response(200, UsageOut)
def usage(customer_id):
    """This period's use per model tier against the tier's limits, overage, balance, next replenishment."""
    customer = find_customer(db.session, g.project, customer_id)
    return usage_shape(customer, standing(db.session, customer))


@bp.route("/<customer_id>/ledger")
@bp.arguments(PageArgs, location="query")
@bp.response(200, LedgerList)
def ledger(args, customer_id):
    """Every balance change that is not metered usage, newest first."""
    customer = find_customer(db.session, g.project, customer_id)
    stmt = select(LedgerEntry).where(LedgerEntry.customer_id == customer.id)
    rows, cursor = newest_first(stmt, LedgerEntry.id, args)
    return {"data": [entry_shape(e) for e in rows], "next_cursor": cursor}


@bp.route("/<customer_id>/requests")
@bp.arguments(PageArgs, location="query")
@bp.response(200, RequestList)
def requests_(args, customer_id):
    """The customer's calls, newest first."""
    customer = find_customer(db.session, g.project, customer_id)
    stmt = select(UsageRecord).where(UsageRecord.customer_id == customer.id)
    rows, cursor = newest_first(stmt, UsageRecord.id, args)
    return {"data": [_request(r) for r in rows], "next_cursor": cursor}


def _request(r: UsageRecord) -> dict:
    return {
        "id": r.request_id,
        "endpoint": r.endpoint,
        "model_requested": r.model_requested,
        "model_served": r.model_served,
        "model_tier": r.model_tier,
        "region": r.region,
        "status": r.status,
        "stream": r.stream,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.total_tokens,
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "tokens_charged": r.tokens_charged,
        "cost_usd": usd_str(r.cost_nusd),
        "overage": r.overage,
        "restricted_from": r.restricted_from,
        "latency_ms": r.latency_ms,
        "created_at": iso(r.created_at),
    }


class LastRefusal(Schema):
    at = fields.String(required=True)
    code = fields.String(required=True)
    message = fields.String(required=True)
    model = fields.String(allow_none=True, required=True)


class RefusalHour(Schema):
    hour = fields.String(required=True)
    code = fields.String(required=True)
    count = fields.Integer(required=True)
    last_at = fields.String(
        allow_none=True,
        required=True,
        metadata={
            "description": "the latest refusal counted in this hour and code (null: counted before "
            "examples were kept)"
        },
    )
    message = fields.String(allow_none=True, required=True, metadata={"description": "its message"})
    model = fields.String(allow_none=True, required=True, metadata={"description": "the model it asked for"})


class RefusalsOut(Schema):
    last = fields.Nested(LastRefusal, allow_none=True, required=True)
    hours = fields.List(fields.Nested(RefusalHour), required=True)


@bp.route("/<customer_id>/refusals")
@bp.response(200, RefusalsOut)
def refusals(customer_id):
    """Refused calls (SPEC 5.5): the last one, and counts per hour and code for 7 days, newest first,
    each with its latest refusal (time, message, model)."""
    found = refusals_of(db.session, find_customer(db.session, g.project, customer_id), now_utc())
    last = found.last and {**found.last, "at": iso(found.last["at"])}
    return {
        "last": last,
        "hours": [
            {
                "hour": iso(row.hour),
                "code": row.code,
                "count": row.count,
                "last_at": iso(row.last_at),
                "message": row.message,
                "model": row.model,
            }
            for row in found.hours
        ],
    }
