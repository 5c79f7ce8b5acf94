"""The proxy's WSGI entry (app/proxy/entry.py): calls are served before Flask, which still serves
everything else; the rest of tests/proxy shows that the answers are the ones Flask gave."""

from __future__ import annotations

import pytest
import requests
from flask import request, request_started

from tests.factories import World

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "user": "acme"}


@pytest.fixture
def flask_requests(world: World) -> list[str]:
    """The paths Flask dispatched (its request_started signal) while the test ran."""
    seen: list[str] = []

    def started(sender, **_):
        seen.append(request.path)

    request_started.connect(started, world.app)
    yield seen
    request_started.disconnect(started, world.app)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_calls_skip_flask_and_the_rest_does_not(world: World, flask_requests: list[str], path: str):
    served = requests.post(
        world.url + path, json=CHAT, headers={"Authorization": f"Bearer {world.key}"}, timeout=10
    )
    assert served.status_code == 200 and served.json()["choices"]
    refused = requests.post(world.url + path, json=CHAT, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert refused.status_code == 401
    assert flask_requests == []
    listed = requests.get(
        world.url + "/v1/models", headers={"Authorization": f"Bearer {world.key}"}, timeout=10
    )
    assert listed.status_code == 200 and flask_requests == ["/v1/models"]


def test_other_methods_are_405_with_allow(world: World):
    for method in ("GET", "PUT", "DELETE"):
        resp = requests.request(
            method, world.url + "/v1/messages", headers={"Authorization": f"Bearer {world.key}"}, timeout=10
        )
        assert resp.status_code == 405 and resp.headers["Allow"] == "OPTIONS, POST"
        assert resp.json()["type"] == "error"  # Anthropic's shape here
        assert resp.json()["error"]["type"] == "invalid_request_error"
    options = requests.options(world.url + "/v1/chat/completions", timeout=10)
    assert options.status_code == 200 and options.headers["Allow"] == "OPTIONS, POST"


def test_a_chunked_body_past_the_limit_is_413_not_cut_short(world: World):
    """A body sent without a length (chunked) is measured as it is read: past the limit (8 MB in
    the tests) it is refused, as one with a Content-Length is, rather than parsed cut short."""

    def chunked(size: int):
        yield b'{"model": "gpt-test", "user": "acme", "messages": [{"role": "user", "content": "hi"}]}'
        for _ in range(size // 65536):
            yield b" " * 65536

    headers = {"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"}
    url = world.url + "/v1/chat/completions"
    too_big = requests.post(url, data=chunked(9 * 1024 * 1024), headers=headers, timeout=30)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
    small = requests.post(url, data=chunked(256 * 1024), headers=headers, timeout=30)
    assert small.status_code == 200, small.text
    assert world.customer("acme") is not None and len(world.usage_records("acme")) == 1
