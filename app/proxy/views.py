"""/v1: one endpoint per API format (SPEC 3). Thin: authenticate, parse, admit, forward, answer."""

from __future__ import annotations

import json
import secrets
import time

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.proxy import bodies, telemetry
from app.proxy.admission import admit
from app.proxy.auth import Caller
from app.proxy.autoshed import AutoLevel
from app.proxy.errors import ProxyError
from app.proxy.formats import FORMATS
from app.proxy.formats.format import Format
from app.proxy.gateway import Gateway, gateway
from app.proxy.relay import Call, finish_json, finish_stream, forward

bp = Blueprint("v1", __name__, url_prefix="/v1")
# LiteLLM's unprefixed paths: scripts and SDKs configured without /v1 work unchanged (SPEC 3).
unprefixed = Blueprint("v1_unprefixed", __name__)


def _body() -> dict:
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        limit = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
        raise ProxyError("request_too_large", f"The request body is larger than {limit} MB.") from exc
    return bodies.parse(raw)


def _serve(fmt: Format) -> Response:
    gw = gateway()
    started = time.perf_counter()
    request_id = "req_" + secrets.token_hex(12)
    project = telemetry.NO_PROJECT
    caller: Caller | None = None
    body: dict | None = None
    try:
        caller = gw.caller()
        project = caller.project.id
        body = _body()
        stream = fmt.check(body)
        admitted = admit(gw.engine, gw.limiter, gw.health, caller, body, request.headers, fmt, gw.clock())
        call = Call(request_id, fmt, stream, admitted)
        reply = forward(gw, call, body)
        response = finish_stream(gw, call, reply) if stream else finish_json(gw, call, reply)
    except ProxyError as err:
        telemetry.finished(project, fmt.endpoint, err.status, time.perf_counter() - started, err.code)
        gw.refusals.note(project, err.customer_id, err.code, err.message, err.model)
        if isinstance(err.auto, AutoLevel) and caller is not None:
            _watch_level(gw, caller, body, err.auto)
        return fmt.error(err, {"x-request-id": request_id})
    telemetry.finished(project, fmt.endpoint, response.status_code, time.perf_counter() - started)
    _watch_level(gw, caller, body, admitted.auto)
    return response


def _watch_level(gw: Gateway, caller: Caller, body: dict | None, auto: AutoLevel) -> None:
    """Automatic shedding moves with health and load: the calls that see a model's level change
    announce it (`shedding.changed`), with the automatic level their admission computed."""
    if body is None or not caller.project.auto_shedding:
        return
    name = body.get("model")
    model = caller.project.models.get(name) if isinstance(name, str) else None
    if model is not None:
        gw.levels.observe(caller.project, model, auto, gw.clock())


@bp.post("/chat/completions")
@unprefixed.post("/chat/completions")
def chat_completions() -> Response:
    return _serve(FORMATS["chat"])


@bp.post("/embeddings")
@unprefixed.post("/embeddings")
def embeddings() -> Response:
    return _serve(FORMATS["embeddings"])


@bp.post("/messages")
@unprefixed.post("/messages")
def messages() -> Response:
    """Anthropic's Messages API; `anthropic-version` is accepted and the format is its own."""
    return _serve(FORMATS["messages"])


@bp.post("/responses")
@unprefixed.post("/responses")
def responses() -> Response:
    """OpenAI's Responses API; nothing is stored (`store: true` is refused)."""
    return _serve(FORMATS["responses"])


@bp.get("/models")
def models() -> Response:
    try:
        caller = gateway().caller()
    except ProxyError as err:
        return err.response()
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "tollgate"}
        for m in sorted(caller.project.models.values(), key=lambda m: m.name)
        if m.deployments and caller.may_use(m.name)
    ]
    return Response(json.dumps({"object": "list", "data": data}), mimetype="application/json")
