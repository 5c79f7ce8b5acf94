"""/api/customers (SPEC 6): list and search, create, read, update, delete, tokens, tier."""

from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from app.api.auth import require_admin
from app.api.idempotency import idempotent
from app.api.pagination import PageArgs, after, page
from app.api.schema_fields import StrictBoolean
from app.customers import operations as ops
from app.db import iso, now_utc, session_writes
from app.extensions import db
from app.metering.credits import MAX_TOKENS, Entry, add_or_set
from app.metering.pricing import usd_str
from app.models.customer import Customer
from app.models.ledger import LedgerEntry
from app.models.project import SHEDDING_TIERS
from app.models.tier import UsageTier
from app.portal import links
from app.portal import views as portal_views

bp = Blueprint("api_customers", __name__, url_prefix="/api/customers", description="Customers")
bp.before_request(require_admin)

ID = validate.Length(min=1, max=256)
REGION = fields.String(validate=validate.Length(min=1, max=32))


class TierRef(fields.Field):
    """A tier key, or {"key": ..., "version": n}."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
        if (
            isinstance(value, dict)
            and set(value) == {"key", "version"}
            and isinstance(value["key"], str)
            and isinstance(value["version"], int)
            and not isinstance(value["version"], bool)
        ):
            return value
        raise ValidationError('must be a tier key or {"key": ..., "version": n}')


class TierRefOut(Schema):
    key = fields.String()
    version = fields.Integer()


class CustomerOut(Schema):
    customer_id = fields.String(required=True)
    name = fields.String(required=True)
    alias = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    token_balance = fields.Integer(required=True)
    tier = fields.Nested(TierRefOut, allow_none=True)
    shedding_tier = fields.String(required=True)
    allowed_regions = fields.List(fields.String(), required=True)
    blocked = fields.Boolean(required=True)
    spend_usd = fields.String(required=True, metadata={"description": "exact decimal USD"})
    tokens_unbilled = fields.Integer(
        required=True,
        metadata={
            "description": "tokens served past what a prepaid hard-capped balance could pay, lifetime "
            "(SPEC 5.2): above 0, an upstream reported more than the hold"
        },
    )
    metadata = fields.Dict(required=True)
    created_at = fields.String(required=True)
    last_seen_at = fields.String(allow_none=True)


class CustomerList(Schema):
    data = fields.List(fields.Nested(CustomerOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CustomerFields(Schema):
    name = fields.String(validate=validate.Length(min=1, max=256))
    alias = fields.String(allow_none=True, validate=validate.Length(max=256))
    email = fields.Email(allow_none=True)
    tier = TierRef()
    shedding_tier = fields.String(validate=validate.OneOf(SHEDDING_TIERS))
    allowed_regions = fields.List(REGION, validate=validate.Length(max=32))
    blocked = StrictBoolean()
    metadata = fields.Dict(keys=fields.String(), validate=lambda m: len(str(m)) <= 16384)


class CustomerCreate(CustomerFields):
    customer_id = fields.String(required=True, validate=ID)
    token_balance = fields.Integer(validate=validate.Range(min=0, max=MAX_TOKENS))


class SearchArgs(PageArgs):
    awaiting_approval = fields.Boolean(
        truthy={"true"},
        falsy={"false"},
        metadata={"description": "true: customers never credited past a 0 initial grant, oldest first"},
    )
    customer_id = fields.String(validate=ID)
    email = fields.String(validate=validate.Length(min=1, max=320))
    tier = fields.String(validate=validate.Length(min=1, max=64))


class TokensIn(Schema):
    amount = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=-MAX_TOKENS, max=MAX_TOKENS)
    )
    mode = fields.String(load_default="add", validate=validate.OneOf(("add", "set")))
    reason = fields.String(load_default="", validate=validate.Length(max=500))

    @validates_schema
    def _set_is_not_negative(self, data, **kwargs):
        if data.get("mode") == "set" and data["amount"] < 0:
            raise ValidationError("a balance cannot be set below 0", "amount")


class LedgerEntryOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    amount = fields.Integer(required=True)
    balance_after = fields.Integer(required=True)
    source = fields.String(required=True)
    reason = fields.String(required=True)
    created_at = fields.String(required=True)


def entry_shape(entry: LedgerEntry | Entry) -> dict:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "source": entry.source,
        "reason": entry.reason,
        "created_at": iso(entry.created_at),
    }


class TierIn(Schema):
    tier = fields.String(required=True, validate=validate.Length(min=1, max=64))
    version = fields.Integer(strict=True, validate=validate.Range(min=1))


def shape(customer: Customer, tiers: dict[int, UsageTier] | None = None) -> dict:
    tier = (
        (tiers or {}).get(customer.tier_id)
        if tiers is not None
        else (db.session.get(UsageTier, customer.tier_id) if customer.tier_id else None)
    )
    return {
        "customer_id": customer.external_id,
        "name": customer.name,
        "alias": customer.alias,
        "email": customer.email,
        "token_balance": customer.token_balance,
        "tier": {"key": tier.key, "version": tier.version} if tier else None,
        "shedding_tier": customer.shedding_tier,
        "allowed_regions": list(customer.allowed_regions or []),
        "blocked": customer.blocked,
        "spend_usd": usd_str(customer.spend_nusd),
        "tokens_unbilled": customer.tokens_unbilled,
        "metadata": customer.metadata_ or {},
        "created_at": iso(customer.created_at),
        "last_seen_at": iso(customer.last_seen_at),
    }


def source() -> str:
    return "api"


@bp.route("")
@bp.arguments(SearchArgs, location="query")
@bp.response(200, CustomerList)
def list_customers(args):
    stmt = select(Customer).where(Customer.project_id == g.project.id, Customer.id > after(args["cursor"]))
    if "customer_id" in args:
        stmt = stmt.where(Customer.external_id == args["customer_id"])
    if "email" in args:
        stmt = stmt.where(Customer.email == args["email"])
    if "tier" in args:
        keyed = select(UsageTier.id).where(
            UsageTier.project_id == g.project.id, UsageTier.key == args["tier"]
        )
        stmt = stmt.where(Customer.tier_id.in_(keyed))
    if "awaiting_approval" in args:
        waiting = ops.awaiting_approval()
        stmt = stmt.where(waiting if args["awaiting_approval"] else ~waiting)
    rows = list(db.session.scalars(stmt.order_by(Customer.id).limit(args["limit"] + 1)))
    rows, cursor = page(rows, args["limit"])
    tiers = {
        t.id: t for t in db.session.scalars(select(UsageTier).where(UsageTier.project_id == g.project.id))
    }
    return {"data": [shape(c, tiers) for c in rows], "next_cursor": cursor}


@bp.route("", methods=["POST"])
@idempotent
@bp.arguments(CustomerCreate)
@bp.response(201, CustomerOut)
def create_customer(fields_in):
    with session_writes(db.session):
        customer = ops.create_customer(db.session, g.project, fields_in, source(), now_utc())
        body = shape(customer)
    return body


@bp.route("/<customer_id>")
@bp.response(200, CustomerOut)
def get_customer(customer_id):
    return shape(ops.find_customer(db.session, g.project, customer_id))


@bp.route("/<customer_id>", methods=["PATCH"])
@bp.arguments(CustomerFields)
@bp.response(200, CustomerOut)
def update_customer(changes, customer_id):
    with session_writes(db.session):
        customer = ops.find_customer(db.session, g.project, customer_id)
        ops.update_customer(db.session, customer, changes, source(), now_utc())
        body = shape(customer)
    return body


@bp.route("/<customer_id>", methods=["DELETE"])
@bp.response(204)
def delete_customer(customer_id):
    with session_writes(db.session):
        ops.delete_customer(db.session, ops.find_customer(db.session, g.project, customer_id))


@bp.route("/<customer_id>/tokens", methods=["POST"])
@idempotent
@bp.arguments(TokensIn)
@bp.response(200, LedgerEntryOut)
def change_tokens(change, customer_id):
    """Add tokens (`add`, negative to take back) or set the balance (`set`), with a ledger entry."""
    with session_writes(db.session):
        customer = ops.find_customer(db.session, g.project, customer_id)
        entry = add_or_set(
            db.session.connection(),
            customer.id,
            change["mode"],
            change["amount"],
            source=source(),
            reason=change["reason"],
            now=now_utc(),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
    return entry_shape(entry)


class ApproveIn(Schema):
    tokens = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_TOKENS),
        metadata={"description": "tokens to credit; absent: the project's approval_tokens"},
    )


@bp.route("/<customer_id>/approve", methods=["POST"])
@idempotent
@bp.arguments(ApproveIn(), required=False)
@bp.response(200, LedgerEntryOut)
def approve_customer(approval, customer_id):
    """Credit a customer awaiting approval (an `adjustment`, reason "approved"); 409 if it is not."""
    with session_writes(db.session):
        customer = ops.find_customer(db.session, g.project, customer_id)
        entry = ops.approve(
            db.session, g.project, customer, (approval or {}).get("tokens"), source(), now_utc()
        )
    return entry_shape(entry)


@bp.route("/<customer_id>/tier", methods=["POST"])
@idempotent
@bp.arguments(TierIn)
@bp.response(200, CustomerOut)
def change_tier(choice, customer_id):
    with session_writes(db.session):
        customer = ops.find_customer(db.session, g.project, customer_id)
        ref = {"key": choice["tier"], "version": choice["version"]} if "version" in choice else choice["tier"]
        tier = ops.resolve_tier(db.session, g.project, ref)
        assert tier is not None
        ops.assign_tier(db.session, customer, tier, source(), now_utc())
        body = shape(customer)
    return body


class PortalLinkIn(Schema):
    expires_in_days = fields.Integer(
        strict=True,
        load_default=links.DAYS_DEFAULT,
        validate=validate.Range(min=1, max=links.DAYS_MOST),
        metadata={
            "description": f"days the link works, 1 to {links.DAYS_MOST} (default {links.DAYS_DEFAULT})"
        },
    )


class PortalLinkOut(Schema):
    url = fields.String(
        required=True, metadata={"description": "the customer's usage page; shown once, never stored"}
    )
    expires_at = fields.String(required=True)


@bp.route("/<customer_id>/portal-link", methods=["POST"])
@bp.arguments(PortalLinkIn(), required=False)
@bp.response(201, PortalLinkOut)
def create_portal_link(choice, customer_id):
    """A signed link to the customer's own read-only usage page (SPEC 10). Nothing of it is stored
    (so it takes no Idempotency-Key: a repeat makes another link, as valid as the first)."""
    with session_writes(db.session):
        customer = ops.find_customer(db.session, g.project, customer_id)
        days = (choice or {}).get("expires_in_days", links.DAYS_DEFAULT)
        link = links.issue(db.session, customer, current_app.config["SECRET_KEY"], now_utc(), days)
    return {"url": portal_views.address(link), "expires_at": iso(link.expires_at)}


@bp.route("/<customer_id>/portal-link", methods=["DELETE"])
@bp.response(204)
def revoke_portal_links(customer_id):
    """Revoke every usage page link of the customer at once; a new link works again."""
    with session_writes(db.session):
        links.revoke_all(db.session, ops.find_customer(db.session, g.project, customer_id))
