"""/api/stripe/events: every Stripe event received, newest first, with what it did (SPEC 7.5)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api.auth import require_admin
from app.api.customers import LedgerEntryOut, entry_shape
from app.api.pagination import PageArgs, newest_first
from app.db import iso
from app.extensions import db
from app.models.ledger import LedgerEntry
from app.models.purchase import OUTCOMES, InboundWebhook

bp = Blueprint("api_stripe", __name__, url_prefix="/api/stripe", description="Stripe events received")
bp.before_request(require_admin)


class StripeEventArgs(PageArgs):
    type = fields.String(validate=validate.Length(min=1, max=100))
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))


class StripeEventOut(Schema):
    id = fields.String(required=True, metadata={"description": "Stripe's event id (evt_…)"})
    type = fields.String(required=True)
    received_at = fields.String(required=True)
    livemode = fields.Boolean(required=True)
    outcome = fields.String(required=True, metadata={"description": ", ".join(OUTCOMES)})
    detail = fields.String(required=True)
    object_id = fields.String(
        allow_none=True, required=True, metadata={"description": "cs_…, ch_…, in_…, sub_…"}
    )
    customer_id = fields.String(allow_none=True, required=True)
    ledger_entry = fields.Nested(LedgerEntryOut, allow_none=True, required=True)


class StripeEventList(Schema):
    data = fields.List(fields.Nested(StripeEventOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


@bp.route("/events")
@bp.arguments(StripeEventArgs, location="query")
@bp.response(200, StripeEventList)
def list_events(args):
    """The project's received Stripe events, newest first: outcome, detail, customer, ledger entry."""
    stmt = select(InboundWebhook).where(InboundWebhook.project_id == g.project.id)
    for name in ("type", "outcome"):
        if name in args:
            column = InboundWebhook.event_type if name == "type" else InboundWebhook.outcome
            stmt = stmt.where(column == args[name])
    rows, cursor = newest_first(stmt, InboundWebhook.id, args)
    entries = {
        e.id: e
        for e in db.session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.id.in_([r.ledger_entry_id for r in rows if r.ledger_entry_id])
            )
        )
    }
    return {"data": [shape(r, entries.get(r.ledger_entry_id or 0)) for r in rows], "next_cursor": cursor}


def shape(row: InboundWebhook, entry: LedgerEntry | None) -> dict:
    return {
        "id": row.event_id,
        "type": row.event_type,
        "received_at": iso(row.received_at),
        "livemode": row.livemode,
        "outcome": row.outcome,
        "detail": row.detail,
        "object_id": row.object_id,
        "customer_id": row.customer_external_id,
        "ledger_entry": entry_shape(entry) if entry else None,
    }
