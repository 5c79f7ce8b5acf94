"""OpenAI-shaped errors (SPEC 3.3), so SDKs raise the right exception."""

from __future__ import annotations

import json

from flask import Response

TYPES = {
    "invalid_request": (400, "invalid_request_error"),
    "customer_required": (400, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "invalid_api_key": (401, "authentication_error"),
    "customer_blocked": (403, "permission_error"),
    "region_not_allowed": (403, "permission_error"),
    "model_not_allowed": (403, "permission_error"),
    "model_not_found": (404, "invalid_request_error"),
    "insufficient_tokens": (429, "insufficient_quota"),
    "usage_limit_reached": (429, "insufficient_quota"),
    "budget_exceeded": (429, "budget_exceeded"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "upstream_error": (502, "api_error"),
    "load_shed": (503, "service_unavailable"),
    "limits_unavailable": (503, "service_unavailable"),
    "upstream_timeout": (504, "api_error"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "internal_error": (500, "api_error"),
}


# Refusals that waiting will not cure: the openai SDK honours x-should-retry and stops retrying.
FINAL = frozenset(
    {
        "insufficient_tokens",
        "usage_limit_reached",
        "budget_exceeded",
        "customer_blocked",
        "region_not_allowed",
        "model_not_allowed",
        "customer_required",
    }
)


class ProxyError(Exception):
    def __init__(
        self, code: str, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.customer_id: str | None = None  # whose call was refused (admission sets it)
        self.model: object = None  # the model the call asked for
        self.auto: object = None  # the automatic shedding level admission computed, if it did

    @property
    def status(self) -> int:
        return TYPES[self.code][0]

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": TYPES[self.code][1],
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        resp = Response(json.dumps(self.body()), status=self.status, mimetype="application/json")
        resp.headers.update(self.headers)
        if self.code in FINAL:
            resp.headers["x-should-retry"] = "false"
        if extra_headers:
            resp.headers.update(extra_headers)
        return resp
