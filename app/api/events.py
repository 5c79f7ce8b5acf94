"""/api/events (newest first: Zapier's polling triggers) and /api/hooks (REST hooks), SPEC 7."""

from __future__ import annotations

import secrets

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from app.api.auth import require_admin
from app.api.idempotency import idempotent
from app.api.pagination import PageArgs, newest_first
from app.crypto import seal
from app.db import iso, session_writes
from app.errors import NotFound
from app.events import targets
from app.extensions import db
from app.models.event import EVENT_TYPES, Event, Hook

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


@bp.route("/hooks", methods=["POST"])
@idempotent
@bp.arguments(HookIn)
@bp.response(201, HookOut)
def subscribe(hook_in):
    """Subscribe a URL to one event type (Zapier's REST hook subscribe)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    hook = Hook(
        public_id="hook_" + secrets.token_hex(12),
        project_id=g.project.id,
        target_url=hook_in["target_url"],
        event_types=[hook_in["event"]],
        secret=seal(current_app.config["SECRET_KEY"], secret) or "",
    )
    with session_writes(db.session):
        db.session.add(hook)
        db.session.flush()
        body = {
            "id": hook.public_id,
            "target_url": hook.target_url,
            "event": hook_in["event"],
            "secret": secret,
        }
    return body


@bp.route("/hooks/<hook_id>", methods=["DELETE"])
@bp.response(204)
def unsubscribe(hook_id):
    with session_writes(db.session):
        hook = db.session.scalar(
            select(Hook).where(Hook.project_id == g.project.id, Hook.public_id == hook_id)
        )
        if hook is None:
            raise NotFound(f"no hook {hook_id!r}", "id")
        db.session.delete(hook)
