"""The proxy's errors (SPEC 3.3): OpenAI's shape, and Anthropic's for `/v1/messages`, so each
SDK raises the right exception."""

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


# Anthropic's error type for each HTTP status (SPEC 3.3).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
MESSAGES_PATHS = ("/v1/messages", "/messages")


def anthropic_body(status: int, message: str) -> dict:
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


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

    def response(self, extra_headers: dict[str, str] | None = None, anthropic: bool = False) -> Response:
        """The error in OpenAI's shape, or in Anthropic's (the message `<code>: <text>`)."""
        body = anthropic_body(self.status, f"{self.code}: {self.message}") if anthropic else self.body()
        resp = Response(json.dumps(body), status=self.status, mimetype="application/json")
        resp.headers.update(self.headers)
        if self.code in FINAL:
            resp.headers["x-should-retry"] = "false"
        if extra_headers:
            resp.headers.update(extra_headers)
        return resp


def response_for(path: str, err: ProxyError, extra_headers: dict[str, str] | None = None) -> Response:
    """The error in the shape of the endpoint at `path` (for errors met before a view runs):
    Anthropic's under /v1/messages (count_tokens, batches... included)."""
    anthropic = any(path == p or path.startswith(p + "/") for p in MESSAGES_PATHS)
    return err.response(extra_headers, anthropic=anthropic)
