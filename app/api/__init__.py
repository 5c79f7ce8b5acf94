"""/api: the management API (SPEC 6). JSON, admin-scope keys or the master key.

Built on flask-smorest: the marshmallow schemas that validate each request also generate the
OpenAPI 3 document served at /api/openapi.json.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_smorest import Api
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from app import nesting
from app.api.errors import ApiError, from_validation
from app.errors import DomainError
from app.extensions import csrf
from app.proxy.errors import ProxyError, response_for
from app.web_session import PROXY_PATHS, STRIPE_WEBHOOKS

DOMAIN_STATUS = {"invalid_request": 400, "not_found": 404, "conflict": 409, "tier_locked": 409}


class ErrorBody(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(allow_none=True, required=True)
    code = fields.String(required=True)


class ErrorOut(Schema):
    """SPEC 3.3's error shape, documented for every operation's error answers."""

    error = fields.Nested(ErrorBody, required=True)


class TollgateApi(Api):
    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        """flask-smorest answers every HTTP error app-wide: keep each surface's own shape."""
        if request.path.startswith(PROXY_PATHS):
            codes = {
                401: "invalid_api_key",
                404: "not_found",
                405: "method_not_allowed",
                413: "request_too_large",
            }
            err = ProxyError(codes.get(error.code or 500, "invalid_request"), error.description or "")
            return response_for(request.path, err)
        from app.api import litellm

        if request.path.startswith(litellm.PATH_PREFIXES):
            return litellm.http_error(error)
        if request.path.startswith(STRIPE_WEBHOOKS):
            return ApiError(error.code or 500, error.description or error.name).response()
        if not request.path.startswith("/api"):
            from app import error_pages

            if error_pages.for_browser() and (error.code or 500) >= 400:
                return error_pages.page(error.code or 500, _detail(error))
            return error
        data = getattr(error, "data", None) or {}
        if "messages" in data:
            return from_validation(data["messages"]).response()
        return ApiError(error.code or 500, data.get("message") or error.description or error.name).response()


api = TollgateApi()


def init(app: Flask) -> None:
    app.config.update(
        API_TITLE="Tollgate management API",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        # Every operation takes an admin key (or the master key) as a bearer token: "Authorize" in
        # /api/docs sends it with "Try it out".
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"key": {"type": "http", "scheme": "bearer"}}},
            "security": [{"key": []}],
        },
        OPENAPI_JSON_PATH="openapi.json",
    )
    api.init_app(app)
    from app.api import (
        customer_activity,
        customers,
        events,
        health,
        keys,
        litellm,
        me,
        settings,
        stripe_events,
        tiers,
        usage,
    )

    blueprints = (
        customers,
        customer_activity,
        me,
        tiers,
        settings,
        events,
        health,
        stripe_events,
        usage,
        keys,
        litellm,
    )
    for blueprint in (module.bp for module in blueprints):
        api.register_blueprint(blueprint)
        csrf.exempt(blueprint)  # keys authenticate every call; no cookies, so no CSRF
    app.register_blueprint(_docs())
    app.register_error_handler(ApiError, lambda e: e.response())
    app.register_error_handler(DomainError, _domain_error)
    app.before_request(_refuse_deep_json)


def _docs():
    """/api/docs: Swagger UI over /api/openapi.json, its files from the installed flask-swagger-ui
    package (no CDN) and no online validator: nothing the page loads leaves this host. It holds no
    data, so it needs no key; "Try it out" takes an admin key."""
    from flask_swagger_ui import get_swaggerui_blueprint

    return get_swaggerui_blueprint(
        "/api/docs",
        "/api/openapi.json",
        config={"app_name": "Tollgate management API", "validatorUrl": None},
        blueprint_name="api_docs_ui",
    )


def _refuse_deep_json() -> Response | None:
    """A body nested too deep is refused before anything parses it (json.loads would raise
    RecursionError, a 500): 400 in the shape of the surface called."""
    from app.api import litellm

    on_litellm = request.path.startswith(litellm.PATH_PREFIXES)
    if not (on_litellm or request.path.startswith("/api/")):
        return None
    if not nesting.too_deep(request.get_data(cache=True)):
        return None
    if on_litellm:
        return litellm.LiteLLMError(400, nesting.TOO_DEEP).response()
    return ApiError(400, nesting.TOO_DEEP).response()


def _detail(error: HTTPException) -> str | None:
    """What went wrong, where werkzeug's own text would only restate the status."""
    description = error.description or ""
    return None if description == type(error).description else description


def _domain_error(error: DomainError):
    from app import error_pages

    if error_pages.for_browser():
        return error_pages.page(DOMAIN_STATUS.get(error.code, 400), error.message)
    return ApiError(
        DOMAIN_STATUS.get(error.code, 400), error.message, code=error.code, param=error.field
    ).response()
