"""The proxy's WSGI entry (SPEC 3; DESIGN "The hot path"): POSTs to the four format endpoints, under
/v1 and LiteLLM's unprefixed paths, are served here, before Flask. Everything else goes on to
Flask: the admin, the API, GET /v1/models.

A proxied call needs none of what Flask builds for a request (the request and app contexts, the
session, URL dispatch, before- and after-request hooks); it costs more CPU than the gateway's own
work. Thin, as a view: authenticate, parse, admit, forward, answer. Errors keep the shapes the
Flask app gives the same paths (app/__init__.py, app/api).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_input_stream

from app.proxy import bodies, telemetry
from app.proxy.admission import admit
from app.proxy.answer import Answer
from app.proxy.auth import Caller
from app.proxy.autoshed import AutoLevel
from app.proxy.errors import ProxyError, response_for
from app.proxy.formats import FORMATS
from app.proxy.formats.format import Format
from app.proxy.gateway import Gateway
from app.proxy.ids import unique
from app.proxy.relay import Call, finish_json, finish_stream, forward

ALLOW = "OPTIONS, POST"
READ_SIZE = 65536
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ENDPOINTS = {
    "chat/completions": "chat",
    "embeddings": "embeddings",
    "messages": "messages",  # Anthropic's Messages API (`anthropic-version` accepted)
    "responses": "responses",  # OpenAI's Responses API; nothing stored (`store: true` is refused)
}
# /v1/<endpoint>, and LiteLLM's unprefixed paths: scripts and SDKs configured without /v1 work unchanged.
ROUTES = {f"{prefix}/{path}": FORMATS[name] for path, name in ENDPOINTS.items() for prefix in ("/v1", "")}


class Entry:
    """Mounted as the Flask app's `wsgi_app`: `wsgi:app`, the test client and every server reach it."""

    def __init__(self, flask_app: Any) -> None:
        self.flask_app = flask_app
        self.then: WSGIApp = flask_app.wsgi_app
        self.log: logging.Logger = flask_app.logger

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        fmt = ROUTES.get(path)
        if fmt is None:
            return self.then(environ, start_response)
        try:
            method = environ["REQUEST_METHOD"]
            if method == "POST":
                response = serve(self.flask_app.extensions["tollgate.gateway"], fmt, environ, self._limit())
            elif method == "OPTIONS":  # as Flask answers it for any route
                response = Answer(200, "text/html; charset=utf-8", {"Allow": ALLOW}, b"")
            else:
                err = ProxyError("method_not_allowed", "The method is not allowed for the requested URL.")
                response = response_for(path, err, {"Allow": ALLOW, "x-request-id": unique("req_")})
        except Exception:  # as the Flask app's own handler: logged, and a 500 in the endpoint's shape
            self.log.exception("unhandled error on %s", path)
            response = response_for(
                path, ProxyError("internal_error", "Internal error; the request was not charged.")
            )
        return response(environ, start_response)

    def _limit(self) -> int | None:
        return self.flask_app.config["MAX_CONTENT_LENGTH"]


def serve(gw: Gateway, fmt: Format, environ: dict[str, Any], max_body: int | None) -> Answer | Response:
    started = time.perf_counter()
    request_id = unique("req_")
    headers = EnvironHeaders(environ)
    project = telemetry.NO_PROJECT
    caller: Caller | None = None
    body: dict | None = None
    try:
        caller = gw.caller(headers)
        project = caller.project.id
        body = _body(environ, max_body)
        stream = fmt.check(body)
        admitted = admit(gw.engine, gw.limiter, gw.health, caller, body, headers, fmt, gw.clock())
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


def _body(environ: dict[str, Any], max_body: int | None) -> dict:
    try:
        raw = _read(environ, max_body)
    except RequestEntityTooLarge as exc:
        limit = (max_body or 0) // (1024 * 1024)
        raise ProxyError("request_too_large", f"The request body is larger than {limit} MB.") from exc
    return bodies.parse(raw)


def _read(environ: dict[str, Any], max_body: int | None) -> bytes:
    """The body; past `max_body`, RequestEntityTooLarge. A body of unknown length (chunked) is
    read a piece at a time up to one byte past the limit: werkzeug's limited stream would stop at
    the limit and hand on the body cut short."""
    if max_body is None or environ.get("CONTENT_LENGTH") or not environ.get("wsgi.input_terminated"):
        return get_input_stream(environ, max_content_length=max_body).read()
    stream, size = environ["wsgi.input"], 0
    parts: list[bytes] = []
    while size <= max_body:
        part = stream.read(min(READ_SIZE, max_body + 1 - size))
        if not part:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
    raise RequestEntityTooLarge()


def _watch_level(gw: Gateway, caller: Caller, body: dict | None, auto: AutoLevel) -> None:
    """Automatic shedding moves with health and load: the calls that see a model's level change
    announce it (`shedding.changed`), with the automatic level their admission computed."""
    if body is None or not caller.project.auto_shedding:
        return
    name = body.get("model")
    model = caller.project.models.get(name) if isinstance(name, str) else None
    if model is not None:
        gw.levels.observe(caller.project, model, auto, gw.clock())
