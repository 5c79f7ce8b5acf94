"""/api/events (newest first: Zapier's polling triggers) and /api/hooks (REST hooks), SPEC 7."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from app.api.auth import require_admin
from app.api.idempotency import idempotent
from app.api.pagination import PageArgs, newest_first
from app.db import iso, now_utc, session_writes
from app.events import hooks, targets
from app.extensions import db
from app.models.event import EVENT_TYPES, Delivery, Event, Hook

MAX_ID = 2**31 - 1  # no id past PostgreSQL's integer: a 404, not a 500

bp = Blueprint("api_events", __name__, url_prefix="/api", description="Events and webhook subscriptions")
bp.before_request(require_admin)


class EventArgs(PageArgs):
    type = fields.String(validate=validate.OneOf(EVENT_TYPES))


class EventOut(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True)
    created_at = fields.String(required=True)
    project = fields.String(required=True)
    customer_id = fields.String(allow_none=True, required=True)
    data = fields.Dict(required=True)


class EventList(Schema):
    data = fields.List(fields.Nested(EventOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


def _target(value: str) -> None:
    try:
        targets.check(value)
    except targets.TargetRefused as exc:
        raise ValidationError(str(exc)) from exc


class HookIn(Schema):
    target_url = fields.String(
        required=True,
        validate=[validate.Length(max=2000), _target],
        metadata={"description": "http or https, never a link-local address (SPEC 7.2)"},
    )
    event = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))


class HookOut(Schema):
    id = fields.String(required=True)
    target_url = fields.String(required=True)
    event = fields.String(required=True)
    secret = fields.String(
        required=True, metadata={"description": "Standard Webhooks signing secret; shown once"}
    )


@bp.route("/events")
@bp.arguments(EventArgs, location="query")
@bp.response(200, EventList)
def list_events(args):
    stmt = select(Event).where(Event.project_id == g.project.id)
    if "type" in args:
        stmt = stmt.where(Event.type == args["type"])
    rows, cursor = newest_first(stmt, Event.id, args)
    return {
        "data": [
            {
                "id": e.public_id,
                "type": e.type,
                "created_at": iso(e.created_at),
                "project": g.project.slug,
                "customer_id": e.customer_external_id,
                "data": e.data,
            }
            for e in rows
        ],
        "next_cursor": cursor,
    }


class HookView(Schema):
    id = fields.String(required=True)
    target_url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    active = fields.Boolean(required=True, metadata={"description": "false once its target answered 410"})
    created_at = fields.String(required=True)


class HookList(Schema):
    data = fields.List(fields.Nested(HookView), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class DeliveryOut(Schema):
    id = fields.Integer(required=True)
    event_id = fields.String(required=True)
    event_type = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "pending, delivered, failed or cancelled"})
    attempts = fields.Integer(required=True)
    last_status = fields.Integer(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
    last_attempt_at = fields.String(allow_none=True, required=True)
    next_attempt_at = fields.String(allow_none=True, required=True)
    delivered_at = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True)


class DeliveryList(Schema):
    data = fields.List(fields.Nested(DeliveryOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


def hook_shape(hook: Hook) -> dict:
    return {
        "id": hook.public_id,
        "target_url": hook.target_url,
        "events": hook.types,
        "active": hook.active,
        "created_at": iso(hook.created_at),
    }


def delivery_shape(delivery: Delivery, event: Event) -> dict:
    return {
        "id": delivery.id,
        "event_id": event.public_id,
        "event_type": event.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "last_attempt_at": iso(delivery.last_attempt_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "delivered_at": iso(delivery.delivered_at),
        "created_at": iso(delivery.created_at),
    }


@bp.route("/hooks", methods=["POST"])
@idempotent
@bp.arguments(HookIn)
@bp.response(201, HookOut)
def subscribe(hook_in):
    """Subscribe a URL to one event type (Zapier's REST hook subscribe)."""
    with session_writes(db.session):
        hook, secret = hooks.create_hook(
            db.session, g.project, hook_in["target_url"], [hook_in["event"]], current_app.config["SECRET_KEY"]
        )
        body = {
            "id": hook.public_id,
            "target_url": hook.target_url,
            "event": hook_in["event"],
            "secret": secret,
        }
    return body


@bp.route("/hooks", methods=["GET"])
@bp.arguments(PageArgs, location="query")
@bp.response(200, HookList)
def list_hooks(args):
    """Every subscription of the project, newest first (secrets are never shown again)."""
    rows, cursor = newest_first(select(Hook).where(Hook.project_id == g.project.id), Hook.id, args)
    return {"data": [hook_shape(h) for h in rows], "next_cursor": cursor}


@bp.route("/hooks/<hook_id>", methods=["DELETE"])
@bp.response(204)
def unsubscribe(hook_id):
    with session_writes(db.session):
        db.session.delete(hooks.find_hook(db.session, g.project, hook_id))


@bp.route("/hooks/<hook_id>/deliveries", methods=["GET"])
@bp.arguments(PageArgs, location="query")
@bp.response(200, DeliveryList)
def list_deliveries(args, hook_id):
    """A subscription's deliveries, newest first: status, attempts, last error, next attempt."""
    hook = hooks.find_hook(db.session, g.project, hook_id)
    rows, cursor = newest_first(select(Delivery).where(Delivery.hook_id == hook.id), Delivery.id, args)
    found = {
        e.id: e for e in db.session.scalars(select(Event).where(Event.id.in_([d.event_id for d in rows])))
    }
    return {"data": [delivery_shape(d, found[d.event_id]) for d in rows], "next_cursor": cursor}


@bp.route("/deliveries/<int:delivery_id>/retry", methods=["POST"])
@bp.response(200, DeliveryOut)
def retry_delivery(delivery_id: int):
    """Send a failed delivery, or one waiting for its next attempt, again now."""
    with session_writes(db.session):
        delivery = hooks.find_delivery(db.session, g.project, delivery_id if delivery_id <= MAX_ID else 0)
        hooks.retry_now(db.session, delivery, now_utc())
        event = db.session.get(Event, delivery.event_id)
        assert event is not None
        body = delivery_shape(delivery, event)
    return body
