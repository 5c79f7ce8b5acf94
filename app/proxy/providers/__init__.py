"""Provider kinds (SPEC 9), one module each: where a deployment's calls go, how they authenticate,
and which API formats it speaks. A call in a format its deployment does not speak is translated
into the deployment's `lingua` (app/proxy/formats/bridges.py).

Public to the admin: its Test button calls a deployment through `send`, as a proxied call would.
"""

from __future__ import annotations

from app.proxy.providers import anthropic, azure, mock, openai
from app.proxy.providers.deployment import DeploymentInfo, Provider
from app.upstream.client import Client, Reply

PROVIDERS: dict[str, Provider] = {
    p.kind: p for p in (openai.PROVIDER, azure.PROVIDER, anthropic.PROVIDER, mock.PROVIDER)
}


def send(client: Client, d: DeploymentInfo, fmt: str, body: dict, stream: bool) -> Reply:
    """One call to one deployment, in a format it speaks."""
    return PROVIDERS[d.provider].send(client, d, fmt, body, stream)
