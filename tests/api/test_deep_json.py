"""Issue 17: a body nested deeper than 128 levels is a 400 on /api and the LiteLLM routes, refused
before anything parses it, in each surface's own error shape; nothing changes. Bodies within the
limit, and brackets inside strings, are served as before."""

from __future__ import annotations

import json

import pytest
import requests

from app.extensions import db
from app.keys.operations import create_key
from tests.api.test_customers import api, error
from tests.api.test_litellm import error as litellm_error
from tests.factories import World
from tests.proxy.test_bad_input import nested
from tests.proxy.test_bad_input import snapshot_counts as snapshot  # every table, idempotency's too


def customer_body(metadata) -> bytes:
    return json.dumps({"customer_id": "deep", "metadata": metadata}).encode()


DEEP_BODIES = {
    "100,000-deep array": b"[" * 100_000 + b"]" * 100_000,
    "200-deep object": b'{"a":' * 200 + b"1" + b"}" * 200,
    "200-deep metadata": customer_body(nested(200)),
    "129 levels in all": customer_body(nested(128)),
    "100,000 brackets never closed": b'{"customer_id": "deep", "metadata": ' + b"{" * 100_000,
}
API_WRITES = [("POST", "/api/customers"), ("PATCH", "/api/customers/known"), ("POST", "/api/tiers")]
LITELLM_WRITES = [("POST", "/customer/new"), ("POST", "/customer/update"), ("POST", "/budget/new")]


def send(world: World, key: str | None, method: str, path: str, raw: bytes, **headers) -> requests.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(
        method,
        f"{world.url}{path}",
        data=raw,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


@pytest.fixture
def known(world: World) -> str:
    """An admin key of a project with customer `known`."""
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    world.give_customer("known", 1000)
    return key


@pytest.mark.parametrize("name", list(DEEP_BODIES))
def test_deep_body_is_400_on_api_writes_and_changes_nothing(world: World, known: str, name):
    before = snapshot()
    for method, path in API_WRITES:
        for headers in ({}, {"Idempotency-Key": f"deep-{name}"}):
            resp = send(world, known, method, path, DEEP_BODIES[name], **headers)
            assert resp.status_code == 400, (method, path, resp.text)
            body = error(resp)
            assert body["code"] == "invalid_request" and "128 levels" in body["message"]
    assert snapshot() == before


@pytest.mark.parametrize("name", list(DEEP_BODIES))
def test_deep_body_is_400_on_litellm_routes_and_changes_nothing(world: World, known: str, name):
    before = snapshot()
    for method, path in LITELLM_WRITES:
        body = litellm_error(send(world, known, method, path, DEEP_BODIES[name]), 400)
        assert body["type"] == "bad_request" and "128 levels" in body["message"]
    assert snapshot() == before


def test_deep_body_without_a_key_is_refused_too(world: World, known: str):
    before = snapshot()
    raw = DEEP_BODIES["100,000-deep array"]
    assert error(send(world, None, "POST", "/api/customers", raw))["code"] == "invalid_request"
    litellm_error(send(world, None, "POST", "/customer/new", raw), 400)
    assert snapshot() == before


def test_metadata_nested_to_the_limit_is_stored_and_read_back(world: World, known: str):
    """128 levels in all (the body's object, then 127 of metadata) is accepted, and nothing that
    reads it later (storage, the response, events, idempotency, LiteLLM's shapes) fails deeper."""
    deepest = {"m": nested(126)}
    resp = send(world, known, "POST", "/api/customers", customer_body(deepest), **{"Idempotency-Key": "k1"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["metadata"] == deepest
    replay = send(world, known, "POST", "/api/customers", customer_body(deepest), **{"Idempotency-Key": "k1"})
    assert replay.status_code == 201 and replay.json() == resp.json()
    hundred = {"m": nested(99)}
    patched = api(world, known, "PATCH", "/customers/deep", json={"metadata": hundred})
    assert patched.status_code == 200, patched.text
    assert api(world, known, "GET", "/customers/deep").json()["metadata"] == hundred
    assert api(world, known, "GET", "/customers", params={"customer_id": "deep"}).status_code == 200
    assert api(world, known, "GET", "/events").status_code == 200
    info = requests.get(
        f"{world.url}/customer/info",
        params={"end_user_id": "deep"},
        headers={"Authorization": f"Bearer {known}"},
        timeout=30,
    )
    assert info.status_code == 200, info.text
    updated = send(
        world, known, "POST", "/customer/update", json.dumps({"user_id": "deep", "alias": "D"}).encode()
    )
    assert updated.status_code == 200, updated.text
    assert world.customer("deep").metadata_ == hundred


def test_brackets_inside_strings_are_not_nesting(world: World, known: str):
    text = "[" * 10_000
    resp = api(world, known, "POST", "/customers", json={"customer_id": "brackets", "metadata": {"n": text}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["metadata"] == {"n": text}
    resp = send(
        world, known, "POST", "/customer/new", json.dumps({"user_id": "b2", "alias": "{" * 200}).encode()
    )
    assert resp.status_code == 200, resp.text
