"""/api/settings (SPEC 6): the project's defaults, shedding level, low-balance threshold."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app.api.auth import require_admin
from app.api.customers import TierRef, TierRefOut
from app.api.schema_fields import StrictBoolean
from app.db import now_utc, session_writes
from app.extensions import db
from app.models.project import SHEDDING_LEVELS, SHEDDING_TIERS
from app.models.tier import UsageTier
from app.proxy import levels
from app.settings.operations import apply_settings

bp = Blueprint("api_settings", __name__, url_prefix="/api/settings", description="Project settings")
bp.before_request(require_admin)


class SettingsIn(Schema):
    new_customer_initial_tokens = fields.Integer(strict=True, validate=validate.Range(min=0, max=10**15))
    default_tier = TierRef()
    default_shedding_tier = fields.String(validate=validate.OneOf(SHEDDING_TIERS))
    default_allowed_regions = fields.List(
        fields.String(validate=validate.Length(min=1, max=32)), validate=validate.Length(max=32)
    )
    low_balance_tokens = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0, max=10**15)
    )
    require_customer = StrictBoolean()
    shedding_level = fields.String(validate=validate.OneOf(SHEDDING_LEVELS))
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=10**7))
    auto_shedding = StrictBoolean()
    litellm_webhook_url = fields.String(
        allow_none=True,
        validate=validate.Length(max=2000),
        metadata={"description": "LiteLLM's spend_tracked webhook for this project (SPEC 7.4); null: off"},
    )
    approval_tokens = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=10**15),
        metadata={"description": "what Approve credits when no amount is given; null: an amount is required"},
    )
    portal_frame_origins = fields.List(
        fields.String(validate=validate.Length(max=300)),
        validate=validate.Length(max=50),
        metadata={
            "description": "origins (https://app.example.com, https://*.example.com) whose pages may "
            "frame the customer usage page (SPEC 10); empty: no site may"
        },
    )


class SettingsOut(SettingsIn):
    default_tier = fields.Nested(TierRefOut, allow_none=True)


def shape() -> dict:
    p = g.project
    tier = db.session.get(UsageTier, p.default_tier_id) if p.default_tier_id else None
    return {
        "new_customer_initial_tokens": p.new_customer_initial_tokens,
        "default_tier": {"key": tier.key, "version": tier.version} if tier else None,
        "default_shedding_tier": p.default_shedding_tier,
        "default_allowed_regions": list(p.default_allowed_regions or []),
        "low_balance_tokens": p.low_balance_tokens,
        "require_customer": p.require_customer,
        "shedding_level": p.shedding_level,
        "capacity": p.capacity,
        "auto_shedding": p.auto_shedding,
        "approval_tokens": p.approval_tokens,
        "litellm_webhook_url": p.litellm_webhook_url,
        "portal_frame_origins": list(p.portal_frame_origins or []),
    }


@bp.route("")
@bp.response(200, SettingsOut)
def get_settings():
    return shape()


@bp.route("", methods=["PATCH"])
@bp.arguments(SettingsIn)
@bp.response(200, SettingsOut)
def update_settings(changes):
    with session_writes(db.session):
        apply_settings(db.session, g.project, changes)
        body = shape()
    levels.after_settings(current_app.extensions["tollgate.gateway"], g.project.id, now_utc())
    return body
