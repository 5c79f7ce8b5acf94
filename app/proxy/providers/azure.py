"""`azure`: Azure OpenAI. The resource's URL, the Azure deployment name as the model, `api-key`
auth, an `api-version` on every call. Responses calls are translated to chat completions: Azure
serves its Responses API on another path and API version than the rest."""

from __future__ import annotations

from app.proxy.providers.deployment import JSON_HEADERS, OPENAI_PATHS, DeploymentInfo, Provider, over_http

DEFAULT_API_VERSION = "2024-10-21"


def address(d: DeploymentInfo, fmt: str) -> tuple[str, dict[str, str]]:
    headers = dict(JSON_HEADERS)
    if d.api_key:
        headers["api-key"] = d.api_key
    url = (
        f"{d.base_url}/openai/deployments/{d.upstream_model}/{OPENAI_PATHS[fmt]}"
        f"?api-version={d.api_version or DEFAULT_API_VERSION}"
    )
    return url, headers


PROVIDER = Provider("azure", frozenset(("chat", "embeddings")), "chat", over_http(address))
