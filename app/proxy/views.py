"""GET /v1/models (SPEC 3): the models a key may call. The calls themselves are served by
app.proxy.entry, before Flask."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from app.proxy.errors import ProxyError
from app.proxy.gateway import gateway

bp = Blueprint("v1", __name__, url_prefix="/v1")


@bp.get("/models")
def models() -> Response:
    try:
        caller = gateway().caller(request.headers)
    except ProxyError as err:
        return err.response()
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "tollgate"}
        for m in sorted(caller.project.models.values(), key=lambda m: m.name)
        if m.deployments and caller.may_use(m.name)
    ]
    return Response(json.dumps({"object": "list", "data": data}), mimetype="application/json")
