"""`anthropic`: Anthropic's Messages API. `base_url` is the API's origin (as the anthropic SDK's),
the key goes as `x-api-key` with an `anthropic-version`; chat completions and Responses calls are
translated to messages."""

from __future__ import annotations

from app.proxy.providers.deployment import JSON_HEADERS, DeploymentInfo, Provider, over_http

DEFAULT_VERSION = "2023-06-01"


def address(d: DeploymentInfo, fmt: str) -> tuple[str, dict[str, str]]:
    headers = dict(JSON_HEADERS, **{"anthropic-version": d.api_version or DEFAULT_VERSION})
    if d.api_key:
        headers["x-api-key"] = d.api_key
    # The SDK's habit is the origin; a base_url that already ends in /v1 is taken as meant.
    root = d.base_url[:-3] if d.base_url.endswith("/v1") else d.base_url
    return f"{root}/v1/messages", headers


PROVIDER = Provider("anthropic", frozenset(("messages",)), "messages", over_http(address))
