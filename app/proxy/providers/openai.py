"""`openai`: any OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq, OpenRouter...), Bearer auth."""

from __future__ import annotations

from app.proxy.providers.deployment import JSON_HEADERS, OPENAI_PATHS, DeploymentInfo, Provider, over_http


def address(d: DeploymentInfo, fmt: str) -> tuple[str, dict[str, str]]:
    headers = dict(JSON_HEADERS)
    if d.api_key:
        headers["authorization"] = f"Bearer {d.api_key}"
    return f"{d.base_url}/{OPENAI_PATHS[fmt]}", headers


PROVIDER = Provider("openai", frozenset(OPENAI_PATHS), "chat", over_http(address))
