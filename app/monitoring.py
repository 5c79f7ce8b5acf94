"""/healthz, /readyz and /metrics (SPEC 2, Operations)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.metering.shedding import LEVEL_RANK
from app.proxy import telemetry
from app.proxy.autoshed import effective
from app.proxy.errors import ProxyError
from app.proxy.gateway import gateway, presented_key

bp = Blueprint("monitoring", __name__)

LOOPBACK = ("127.0.0.1", "::1")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the database answers and, with TOLLGATE_REDIS_URL, Redis too (SPEC 12): without
    it calls under rate limits are refused, so a load balancer should prefer other nodes."""
    reasons = []
    try:
        with gateway().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reasons.append(f"database: {type(exc).__name__}")
    problem = gateway().health.redis_problem()
    if problem is not None:
        reasons.append(f"redis: {problem}")
    if reasons:
        return jsonify(status="unavailable", reasons=reasons), 503
    return jsonify(status="ok"), 200


ALL_PROJECTS = -1


def _metrics_reader() -> int | None:
    """Who may read: ALL_PROJECTS for loopback and the master key, a project's id for its admin
    keys, None for anyone else. A request relayed by a proxy (X-Forwarded-For) is not loopback."""
    if request.remote_addr in LOOPBACK and not request.headers.get("X-Forwarded-For"):
        return ALL_PROJECTS
    key = presented_key(request.headers)
    if not key:
        return None
    cache = gateway().cache
    if cache.is_master(key):
        return ALL_PROJECTS
    try:
        caller = cache.authenticate(key, None)
    except ProxyError:
        return None
    return caller.project.id if caller.scope == "admin" else None


@bp.get("/metrics")
def metrics() -> Response:
    reader = _metrics_reader()
    if reader is None:
        return ProxyError("invalid_api_key", "Metrics are open to loopback and to admin keys.").response()
    gw = gateway()
    snap = gw.cache.current()
    slugs = {p.id: p.slug for p in snap.projects.values()}

    def visible(project: int) -> bool:
        return reader == ALL_PROJECTS or project == reader

    shown = [p for p in snap.projects.values() if visible(p.id)]
    deployments = {
        d.id: (p.id, gw.health.healthy(d.id)) for p in shown for m in p.models.values() for d in m.deployments
    }
    levels = {
        (p.id, m.name): LEVEL_RANK[effective(gw.health, p, m, p.shedding_level).level]
        for p in shown
        for m in p.models.values()
    }
    text = telemetry.render(slugs, deployments, visible, levels)
    return Response(text, mimetype="text/plain; version=0.0.4")
