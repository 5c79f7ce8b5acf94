"""GET /api/me: who this key is (Zapier's auth test, SPEC 7.3)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.api.auth import require_admin

bp = Blueprint("api_me", __name__, url_prefix="/api", description="The calling key")
bp.before_request(require_admin)


class MeOut(Schema):
    project = fields.String(required=True)
    project_name = fields.String(required=True)
    scope = fields.String(required=True)


@bp.route("/me")
@bp.response(200, MeOut)
def me():
    return {"project": g.project.slug, "project_name": g.project.name, "scope": g.caller.scope}
