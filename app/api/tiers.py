"""/api/tiers (SPEC 6): tier versions, create, edit while unlocked, clone, migrate."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from app.api.auth import require_admin
from app.api.idempotency import idempotent
from app.api.pagination import PageArgs, after, page
from app.api.schema_fields import StrictBoolean
from app.customers.operations import migrate_customers
from app.db import now_utc, session_writes
from app.extensions import db
from app.models.customer import Customer
from app.models.tier import ANCHORS, MODEL_TIERS, ON_LIMIT, REPLENISH_MODES, UsageTier
from app.tiers.operations import clone_tier, create_tier, edit_tier, find_version
from app.tiers.spec import SMALL, tier_spec

bp = Blueprint("api_tiers", __name__, url_prefix="/api/tiers", description="Usage tiers")
bp.before_request(require_admin)

COUNT = {"allow_none": True, "validate": validate.Range(min=0, max=2**62)}
MONEY = {"allow_none": True, "metadata": {"description": "USD as a decimal string or number"}}


class Limit(Schema):
    calls = fields.Integer(strict=True, **COUNT)
    tokens = fields.Integer(strict=True, **COUNT)


class TierFields(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=2000))
    prepaid = StrictBoolean()
    period = fields.String(validate=validate.Length(min=1, max=16))
    anchor = fields.String(validate=validate.OneOf(ANCHORS))
    replenish_tokens = fields.Integer(strict=True, **COUNT)
    replenish_mode = fields.String(validate=validate.OneOf(REPLENISH_MODES))
    max_balance = fields.Integer(strict=True, **COUNT)
    limits = fields.Dict(
        keys=fields.String(validate=validate.OneOf(MODEL_TIERS)), values=fields.Nested(Limit)
    )
    on_limit = fields.String(validate=validate.OneOf(ON_LIMIT))
    restrict_to = fields.String(allow_none=True, validate=validate.OneOf(MODEL_TIERS))
    max_budget_usd = fields.Raw(**MONEY)
    soft_budget_usd = fields.Raw(**MONEY)
    model_budgets_usd = fields.Dict(keys=fields.String(), values=fields.Raw())
    rpm_limit = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=SMALL))
    tpm_limit = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=2**62))
    max_parallel_requests = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=10**6)
    )
    default_reserve_tokens = fields.Integer(strict=True, validate=validate.Range(min=1, max=10**7))
    hard_cap = StrictBoolean()


class TierCreate(TierFields):
    key = fields.String(required=True, validate=validate.Length(min=1, max=64))


class TierOut(TierCreate):
    version = fields.Integer(required=True)
    max_budget_usd = fields.String(allow_none=True)
    soft_budget_usd = fields.String(allow_none=True)
    model_budgets_usd = fields.Dict(keys=fields.String(), values=fields.String())
    locked = fields.Boolean(required=True)
    customer_count = fields.Integer(required=True)


class TierList(Schema):
    data = fields.List(fields.Nested(TierOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class MigrateIn(Schema):
    from_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    to_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    customer_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=256)),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=10000),
    )


class MigrateOut(Schema):
    moved = fields.Integer(required=True)


def _counts(tier_ids: list[int]) -> dict[int, int]:
    rows = db.session.execute(
        select(Customer.tier_id, func.count())
        .where(Customer.tier_id.in_(tier_ids))
        .group_by(Customer.tier_id)
    )
    return {tier_id: count for tier_id, count in rows}


def shape(tier: UsageTier, count: int | None = None) -> dict:
    if count is None:
        count = _counts([tier.id]).get(tier.id, 0)
    return {**tier_spec(tier), "customer_count": count}


@bp.route("")
@bp.arguments(PageArgs, location="query")
@bp.response(200, TierList)
def list_tiers(args):
    stmt = select(UsageTier).where(UsageTier.project_id == g.project.id, UsageTier.id > after(args["cursor"]))
    rows, cursor = page(
        list(db.session.scalars(stmt.order_by(UsageTier.id).limit(args["limit"] + 1))), args["limit"]
    )
    counts = _counts([t.id for t in rows])
    return {"data": [shape(t, counts.get(t.id, 0)) for t in rows], "next_cursor": cursor}


@bp.route("", methods=["POST"])
@idempotent
@bp.arguments(TierCreate)
@bp.response(201, TierOut)
def create(spec):
    with session_writes(db.session):
        body = shape(create_tier(db.session, g.project, spec), 0)
    return body


@bp.route("/<key>/versions/<int:version>")
@bp.response(200, TierOut)
def get_version(key, version):
    return shape(find_version(db.session, g.project, key, version))


@bp.route("/<key>/versions/<int:version>", methods=["PATCH"])
@bp.arguments(TierFields)
@bp.response(200, TierOut)
def edit_version(changes, key, version):
    with session_writes(db.session):
        body = shape(edit_tier(db.session, find_version(db.session, g.project, key, version), changes))
    return body


@bp.route("/<key>/versions/<int:version>/clone", methods=["POST"])
@idempotent
@bp.response(201, TierOut)
def clone(key, version):
    with session_writes(db.session):
        body = shape(clone_tier(db.session, find_version(db.session, g.project, key, version)), 0)
    return body


@bp.route("/<key>/migrate", methods=["POST"])
@idempotent
@bp.arguments(MigrateIn)
@bp.response(200, MigrateOut)
def migrate(move, key):
    with session_writes(db.session):
        moved = migrate_customers(
            db.session,
            g.project,
            key,
            move["from_version"],
            move["to_version"],
            move["customer_ids"],
            "api",
            now_utc(),
        )
    return {"moved": moved}
