"""The LiteLLM routes' blueprint and their errors, in LiteLLM's shape (see the package's docstring)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from app.api.auth import require_admin
from app.api.errors import ApiError
from app.errors import DomainError, NotFound

bp = Blueprint("litellm", __name__, description="LiteLLM-compatible customer, budget and key API")
bp.before_request(require_admin)

SOURCE = "api"
TYPES = {
    400: "bad_request",
    401: "auth_error",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    500: "internal_server_error",
}
# Tier fields named in domain errors, as the LiteLLM field they come from.
LITELLM_FIELDS = {
    "key": "budget_id",
    "period": "budget_duration",
    "max_budget_usd": "max_budget",
    "soft_budget_usd": "soft_budget",
    "model_budgets_usd": "model_max_budget",
    "customer_id": "user_id",
    "tier": "budget_id",
}


class LiteLLMError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def response(self) -> Response:
        body = {
            "error": {
                "message": self.message,
                "type": TYPES.get(
                    self.status, "bad_request" if self.status < 500 else "internal_server_error"
                ),
                "param": self.param,
                "code": str(self.status),
            }
        }
        return Response(json.dumps(body), status=self.status, mimetype="application/json")


@bp.errorhandler(LiteLLMError)
def _litellm_error(err: LiteLLMError) -> Response:
    return err.response()


@bp.errorhandler(ApiError)
def _api_error(err: ApiError) -> Response:
    return LiteLLMError(err.status, err.message, err.param).response()


@bp.errorhandler(DomainError)
def _domain_error(err: DomainError) -> Response:
    status = 404 if isinstance(err, NotFound) else 400  # LiteLLM answers conflicts with 400
    return LiteLLMError(status, err.message, LITELLM_FIELDS.get(err.field or "", err.field)).response()


# Paths of this blueprint: an HTTP error raised before a view is chosen (405, say) reaches the app's
# handler, not the blueprint's; the app's handler can answer these paths with `http_error`.
PATH_PREFIXES = ("/customer/", "/end_user/", "/budget/", "/key/")


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> Response:
    """werkzeug errors, and flask-smorest's validation errors (`data["messages"]`)."""
    status = err.code or 500
    data = getattr(err, "data", None) or {}
    if "messages" in data:
        message, param = _first_problem(data["messages"])
        return LiteLLMError(status, message, param).response()
    return LiteLLMError(status, data.get("message") or err.description or err.name).response()


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    current_app.logger.exception("unhandled error on a LiteLLM route")
    return LiteLLMError(500, "Internal error.").response()


def _first_problem(messages: Any) -> tuple[str, str | None]:
    """webargs' {"json": {"max_budget": ["Not a valid number."]}} as one message naming the field."""
    for problems in messages.values() if isinstance(messages, dict) else ():
        if isinstance(problems, dict) and problems:
            field, text = next(iter(problems.items()))
            param = None if field == "_schema" else str(field)
            return (f"{field}: {_text(text)}" if param else _text(text)), param
        if problems:
            return _text(problems), None
    return "The request is not valid.", None


def _text(problems: Any) -> str:
    if isinstance(problems, list) and problems:
        return _text(problems[0])
    if isinstance(problems, dict) and problems:
        key, value = next(iter(problems.items()))
        return f"{key}: {_text(value)}"
    return str(problems)
