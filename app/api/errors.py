"""Errors of the management API: SPEC 3.3's shape with SPEC 6's codes."""

from __future__ import annotations

import json

from flask import Response

STATUS_CODES = {
    400: ("invalid_request", "invalid_request_error"),
    401: ("unauthorized", "authentication_error"),
    403: ("forbidden", "permission_error"),
    404: ("not_found", "invalid_request_error"),
    405: ("method_not_allowed", "invalid_request_error"),
    409: ("conflict", "invalid_request_error"),
    413: ("request_too_large", "invalid_request_error"),
    415: ("invalid_request", "invalid_request_error"),
    422: ("invalid_request", "invalid_request_error"),
    500: ("internal_error", "api_error"),
    503: ("unavailable", "api_error"),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, ("invalid_request", ""))[0]
        self.message = message
        self.param = param

    def response(self) -> Response:
        kind = STATUS_CODES.get(self.status, ("", "invalid_request_error"))[1]
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return Response(json.dumps(body), status=self.status, mimetype="application/json")


def from_validation(messages: dict) -> ApiError:
    """webargs' {"json": {"amount": ["Not a valid integer."]}} as one error naming the field."""
    for where in messages.values():
        if isinstance(where, dict):
            for field, problems in where.items():
                text = _first(problems)
                return ApiError(400, f"{field}: {text}", param=str(field))
    return ApiError(400, "The request is not valid.")


def _first(problems) -> str:
    if isinstance(problems, list) and problems:
        return _first(problems[0])
    if isinstance(problems, dict) and problems:
        key, value = next(iter(problems.items()))
        return f"{key}: {_first(value)}"
    return str(problems)
