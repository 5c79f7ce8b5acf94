"""/healthz, /readyz and /metrics (SPEC 2, Operations)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.proxy import telemetry
from app.proxy.errors import ProxyError
from app.proxy.views import gateway, presented_key

bp = Blueprint("monitoring", __name__)

LOOPBACK = ("127.0.0.1", "::1")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    try:
        with gateway().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return jsonify(status="unavailable", error=type(exc).__name__), 503
    return jsonify(status="ok"), 200


def _may_read_metrics() -> bool:
    if request.remote_addr in LOOPBACK and not request.headers.get("X-Forwarded-For"):
        return True
    key = presented_key()
    if not key:
        return False
    try:
        caller = gateway().cache.authenticate(key, request.headers.get("X-Tollgate-Project"))
    except ProxyError:
        return False
    return caller.scope == "admin" or hmac.compare_digest(key, gateway().cache.master_key or "")


@bp.get("/metrics")
def metrics() -> Response:
    if not _may_read_metrics():
        return ProxyError("invalid_api_key", "Metrics are open to loopback and to admin keys.").response()
    gw = gateway()
    snap = gw.cache.current()
    health = {
        d.id: gw.breakers.healthy(d.id)
        for p in snap.projects.values()
        for m in p.models.values()
        for d in m.deployments
    }
    return Response(telemetry.render(health), mimetype="text/plain; version=0.0.4")
