"""/api/usage (SPEC 6): calls, tokens and spend grouped by customer, model, model tier or day; JSON or CSV."""

from __future__ import annotations

import csv
import io

from flask import Response, g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select

from app.api.auth import require_admin
from app.extensions import db
from app.metering.pricing import usd_str
from app.models.customer import Customer
from app.models.usage import UsageRecord

bp = Blueprint("api_usage", __name__, url_prefix="/api/usage", description="Usage analytics")
bp.before_request(require_admin)

GROUPS = ("customer", "model", "model_tier", "day")
COLUMNS = (
    "group",
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "spend_usd",
    "tokens_unbilled",
)
# A spreadsheet runs a cell that starts with one of these as a formula (SPEC 6). Only the group is
# text from outside; the numbers are Tollgate's own and stay numbers.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class UsageArgs(Schema):
    group_by = fields.String(load_default="day", validate=validate.OneOf(GROUPS))
    from_ = fields.AwareDateTime(data_key="from", load_default=None, default_timezone=None)
    to = fields.AwareDateTime(load_default=None)
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("must be after from", "to")


class UsageRow(Schema):
    group = fields.String(allow_none=True, required=True)
    calls = fields.Integer(required=True)
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)
    spend_usd = fields.String(required=True)
    tokens_unbilled = fields.Integer(
        required=True, metadata={"description": "tokens served that the balance could not pay for"}
    )


class UsageReport(Schema):
    group_by = fields.String(required=True)
    data = fields.List(fields.Nested(UsageRow), required=True)


def _day():
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", UsageRecord.created_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", UsageRecord.created_at)


def _group(by: str):
    return {
        "customer": Customer.external_id,
        "model": UsageRecord.model_served,
        "model_tier": UsageRecord.model_tier,
        "day": _day(),
    }[by]


def report(args: dict) -> list[dict]:
    key = _group(args["group_by"]).label("grp")
    stmt = (
        select(
            key,
            func.count(),
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
            func.coalesce(func.sum(UsageRecord.total_tokens), 0),
            func.coalesce(func.sum(UsageRecord.cost_nusd), 0),
            func.coalesce(func.sum(UsageRecord.tokens_unbilled), 0),
        )
        .select_from(UsageRecord)
        .outerjoin(Customer, Customer.id == UsageRecord.customer_id)
        .where(UsageRecord.project_id == g.project.id, UsageRecord.status == 200)
        .group_by(key)
        .order_by(key)
    )
    if args["from_"] is not None:
        stmt = stmt.where(UsageRecord.created_at >= args["from_"])
    if args["to"] is not None:
        stmt = stmt.where(UsageRecord.created_at < args["to"])
    return [
        {
            "group": grp,
            "calls": int(calls),
            "prompt_tokens": int(p),
            "completion_tokens": int(c),
            "total_tokens": int(t),
            "spend_usd": usd_str(int(cost)),
            "tokens_unbilled": int(unbilled),
        }
        for grp, calls, p, c, t, cost, unbilled in db.session.execute(stmt)
    ]


def neutralise(text: str | None) -> str | None:
    """A text cell that a spreadsheet shows as text rather than running as a formula."""
    return "'" + text if text and text.startswith(FORMULA_STARTS) else text


@bp.route("")
@bp.arguments(UsageArgs, location="query")
@bp.response(200, UsageReport)
@bp.doc(
    responses={
        "200": {
            "description": "Usage rows in [from, to), as JSON or (format=csv) as CSV",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/UsageReport"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    }
)
def usage(args):
    """Successful calls in [from, to), grouped; `customer` null is project-level usage."""
    rows = report(args)
    if args["format"] == "csv":
        out = io.StringIO()
        # RFC 4180's line ends: the writer then quotes a cell holding a CR, which a bare "\n"
        # terminator would let through unquoted, splitting the row for every reader.
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows({**row, "group": neutralise(row["group"])} for row in rows)
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename=usage-by-{args['group_by']}.csv"},
        )
    return {"group_by": args["group_by"], "data": rows}
