"""GET /api/health (SPEC 6, 8): every deployment of the project with its state, consecutive
failures and calls in flight, and each model's effective shedding level, as one view across every
worker and node (Redis) or of this process (without it)."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.api.auth import require_admin
from app.proxy.autoshed import effective

bp = Blueprint("api_health", __name__, url_prefix="/api", description="Deployment health and shedding")
bp.before_request(require_admin)


class DeploymentOut(Schema):
    id = fields.Integer(required=True)
    base_url = fields.String(required=True)
    model = fields.String(required=True, metadata={"description": "the upstream's model name"})
    region = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "healthy, unhealthy or probing"})
    consecutive_failures = fields.Integer(required=True)
    in_flight = fields.Integer(required=True)


class ModelHealthOut(Schema):
    model = fields.String(required=True)
    shedding_level = fields.String(required=True, metadata={"description": "off, low or middle"})
    deployments = fields.List(fields.Nested(DeploymentOut), required=True)


class HealthOut(Schema):
    models = fields.List(fields.Nested(ModelHealthOut), required=True)


@bp.route("/health")
@bp.response(200, HealthOut)
def health():
    """Each model's effective shedding level and its deployments' health, as every node sees it."""
    gateway = current_app.extensions["tollgate.gateway"]
    project = gateway.cache.current().projects.get(g.project.id)
    if project is None:
        return {"models": []}
    models = []
    for model in sorted(project.models.values(), key=lambda m: m.name):
        deployments = []
        for d in model.deployments:
            view = gateway.health.view(d.id)
            deployments.append(
                {
                    "id": d.id,
                    "base_url": d.base_url,
                    "model": d.upstream_model,
                    "region": d.region,
                    "state": view.state,
                    "consecutive_failures": view.consecutive_failures,
                    "in_flight": view.in_flight,
                }
            )
        level = effective(gateway.health, project, model, g.project.shedding_level).level
        models.append({"model": model.name, "shedding_level": level, "deployments": deployments})
    return {"models": models}
