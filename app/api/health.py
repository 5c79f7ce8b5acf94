"""GET /api/health (SPEC 6, 8): every deployment of the project with its state, consecutive
failures and calls in flight, and each model's effective shedding level, as one view across every
worker and node (Redis) or of this process (without it)."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from app.api.auth import require_admin
from app.extensions import db
from app.models.catalog import Deployment, Model
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
    shared = fields.Boolean(
        required=True,
        metadata={"description": "true: every worker's and node's view (Redis); false: this process's own"},
    )


@bp.route("/health")
@bp.response(200, HealthOut)
def health():
    """Each model's effective shedding level and its deployments' health, as every node sees it."""
    gateway = current_app.extensions["tollgate.gateway"]
    snapshot = gateway.cache.current().projects.get(g.project.id)
    rows = db.session.execute(
        select(Model, Deployment)
        .outerjoin(Deployment, Deployment.model_id == Model.id)
        .where(Model.project_id == g.project.id)
        .order_by(Model.name, Deployment.id)
    ).all()
    models: dict[str, dict] = {}
    for model, deployment in rows:  # every deployment, the disabled ones too
        entry = models.setdefault(
            model.name, {"model": model.name, "shedding_level": "off", "deployments": []}
        )
        if deployment is not None:
            entry["deployments"].append(_deployment(gateway.health, deployment))
        served = snapshot.models.get(model.name) if snapshot is not None else None
        if served is not None:
            level = effective(gateway.health, snapshot, served, g.project.shedding_level)
            entry["shedding_level"] = level.level
        else:  # not served yet (added this second, or no enabled deployment): the manual level
            entry["shedding_level"] = g.project.shedding_level
    return {"models": list(models.values()), "shared": gateway.health.is_shared}


def _deployment(health, deployment: Deployment) -> dict:
    view = health.view(deployment.id)
    return {
        "id": deployment.id,
        "base_url": deployment.base_url,
        "model": deployment.upstream_model,
        "region": deployment.region,
        "state": view.state,
        "consecutive_failures": view.consecutive_failures,
        "in_flight": view.in_flight,
    }
