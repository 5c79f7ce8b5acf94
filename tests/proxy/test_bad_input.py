"""Bad input gets the documented status and error body, and writes nothing anywhere (acceptance 8)."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import func, select

from app import nesting
from app.extensions import db
from tests.factories import World

OK_MESSAGES = [{"role": "user", "content": "hi"}]


def snapshot_counts() -> dict[str, int]:
    db.session.rollback()
    return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}


def send(
    world: World,
    data: bytes | None = None,
    json_body=None,
    key: str | None = "default",
    path="chat/completions",
    headers: dict | None = None,
) -> requests.Response:
    h = {"Content-Type": "application/json", **(headers or {})}
    if key == "default":
        h["Authorization"] = f"Bearer {world.key}"
    elif key is not None:
        h["Authorization"] = f"Bearer {key}"
    return requests.post(f"{world.url}/v1/{path}", data=data, json=json_body, headers=h, timeout=30)


CASES = [
    ("malformed json", dict(data=b'{"model": "gpt-test", "messages": [}'), 400, "invalid_request"),
    ("not an object", dict(json_body=["model"]), 400, "invalid_request"),
    ("missing model", dict(json_body={"messages": OK_MESSAGES, "user": "x1"}), 400, "invalid_request"),
    (
        "model not a string",
        dict(json_body={"model": 4, "messages": OK_MESSAGES, "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "messages not a list",
        dict(json_body={"model": "gpt-test", "messages": "hi", "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "empty messages",
        dict(json_body={"model": "gpt-test", "messages": [], "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "message without role",
        dict(json_body={"model": "gpt-test", "messages": [{"content": "x"}], "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "max_tokens a string",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "max_tokens": "5", "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "max_tokens negative",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "max_tokens": -1, "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "stream not a bool",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "stream": "yes", "user": "x1"}),
        400,
        "invalid_request",
    ),
    (
        "user a number",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "user": 5}),
        400,
        "invalid_request",
    ),
    (
        "customer not an object",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "customer": "c"}),
        400,
        "invalid_request",
    ),
    (
        "customer id too long",
        dict(
            json_body={"model": "gpt-test", "messages": OK_MESSAGES, "customer": {"customer_id": "x" * 300}}
        ),
        400,
        "invalid_request",
    ),
    (
        "NUL in the customer id",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "user": "a\u0000b"}),
        400,
        "invalid_request",
    ),
    (
        "newline in the customer id",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "user": "line\nbreak"}),
        400,
        "invalid_request",
    ),
    (
        "tab in X-Customer-Name",
        dict(
            json_body={"model": "gpt-test", "messages": OK_MESSAGES},
            headers={"X-Customer-Id": "ok", "X-Customer-Name": "a\tb"},
        ),
        400,
        "invalid_request",
    ),
    ("not utf-8", dict(data=b'{"model": "gpt-test", "user": "\xff\xfe"}'), 400, "invalid_request"),
    (
        "embeddings without input",
        dict(json_body={"model": "gpt-test", "user": "x1"}, path="embeddings"),
        400,
        "invalid_request",
    ),
    (
        "10 MB body",
        dict(data=b'{"model": "gpt-test", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'),
        413,
        "request_too_large",
    ),
    (
        "missing key",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "user": "x1"}, key=None),
        401,
        "invalid_api_key",
    ),
    (
        "unknown key",
        dict(json_body={"model": "gpt-test", "messages": OK_MESSAGES, "user": "x1"}, key="tg-" + "x" * 40),
        401,
        "invalid_api_key",
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_refused_and_writes_nothing(world: World, name, kwargs, status, code):
    before = snapshot_counts()
    resp = send(world, **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    assert error["message"] and set(error) == {"message", "type", "param", "code"}
    assert snapshot_counts() == before
    assert world.upstream.requests == []


def test_require_customer_refuses_anonymous_calls(world: World):
    world.set(require_customer=True)
    before = snapshot_counts()
    resp = send(world, json_body={"model": "gpt-test", "messages": OK_MESSAGES})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "customer_required"
    assert snapshot_counts() == before


def test_unknown_route_and_method_answer_in_openai_shape(world: World):
    resp = requests.get(f"{world.url}/v1/nope", timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = requests.get(f"{world.url}/v1/chat/completions", timeout=10)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_project_level_call_without_customer_is_metered(world: World):
    resp = send(world, json_body={"model": "gpt-test", "messages": OK_MESSAGES, "max_tokens": 2})
    assert resp.status_code == 200
    [record] = world.usage_records()
    assert record.customer_id is None and record.total_tokens == resp.json()["usage"]["total_tokens"]
    assert record.cost_nusd > 0


def nested(depth: int, leaf=1):
    """A value `depth` levels deep, objects and arrays taking turns."""
    for level in range(depth):
        leaf = {"a": leaf} if level % 2 else [leaf]
    return leaf


DEEP_BODIES = {
    "100,000-deep array": b"[" * 100_000 + b"]" * 100_000,
    "200-deep object": b'{"a":' * 200 + b"1" + b"}" * 200,
    "200-deep tools in a valid call": json.dumps(
        {"model": "gpt-test", "messages": OK_MESSAGES, "user": "x1", "tools": nested(200)}
    ).encode(),
    "100,000 brackets never closed": b'{"model": "gpt-test", "messages": ' + b"[" * 100_000,
}


@pytest.mark.parametrize("path", ["chat/completions", "embeddings"])
@pytest.mark.parametrize("name", list(DEEP_BODIES))
def test_deeply_nested_body_is_400_before_parsing(world: World, path, name):
    before = snapshot_counts()
    resp = send(world, data=DEEP_BODIES[name], path=path)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_request" and "128 levels" in error["message"]
    assert snapshot_counts() == before
    assert world.upstream.requests == []


def test_recursion_error_while_parsing_is_400_too(world: World, monkeypatch):
    """The second guard: were the depth check ever to miss, json.loads's RecursionError is a 400."""
    monkeypatch.setattr(nesting, "too_deep", lambda raw, limit=nesting.MAX_DEPTH: False)
    before = snapshot_counts()
    resp = send(world, data=DEEP_BODIES["100,000-deep array"])
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
    assert snapshot_counts() == before


def test_nesting_within_the_limit_and_brackets_in_strings_are_served(world: World):
    tools = [{"type": "function", "function": {"name": "f", "parameters": nested(100)}}]
    text = "[" * 10_000 + "{" * 10_000
    resp = send(
        world,
        json_body={
            "model": "gpt-test",
            "user": "x1",
            "tools": tools,
            "messages": [{"role": "user", "content": text}],
        },
    )
    assert resp.status_code == 200, resp.text
    [forwarded] = world.upstream.requests
    assert forwarded["json"]["tools"] == tools and forwarded["json"]["messages"][0]["content"] == text
    resp = send(
        world, json_body={"model": "gpt-test", "user": "x1", "input": [text, "]" * 300]}, path="embeddings"
    )
    assert resp.status_code == 200, resp.text
    assert len(world.usage_records("x1")) == 2


def test_bodies_orjson_would_change_are_forwarded_as_json_reads_them(world: World):
    """The proxy's JSON is orjson's where it gives json's answer: a lone surrogate is served (and
    sent on escaped), an integer past 64 bits reaches the upstream exact, NaN is refused."""
    world.give_customer("acme", 10_000)
    headers = {"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"}
    raw = (
        '{"model": "gpt-test", "user": "acme", "seed": 1180591620717411303424, '
        '"messages": [{"role": "user", "content": "half \\ud83d pair"}]}'
    )
    served = requests.post(f"{world.url}/v1/chat/completions", data=raw, headers=headers, timeout=10)
    assert served.status_code == 200, served.text
    sent = world.upstream.requests[-1]["json"]
    assert sent["seed"] == 2**70 and sent["messages"][0]["content"] == "half \ud83d pair"
    assert world.customer("acme").reserved_tokens == 0
    for number in ("NaN", "Infinity", "1e400"):
        refused = requests.post(
            f"{world.url}/v1/chat/completions",
            data=raw.replace("1180591620717411303424", number),
            headers=headers,
            timeout=10,
        )
        assert refused.status_code == 400 and "not valid JSON" in refused.json()["error"]["message"]
