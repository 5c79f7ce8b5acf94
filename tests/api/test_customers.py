"""/api/customers and /api/me: auth, shapes, pagination, writes through the domain operations."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select, update

from app.extensions import db
from app.keys.operations import create_key
from app.models import Customer, Event
from app.projects.operations import create_project
from tests.conftest import MASTER_KEY
from tests.factories import World, chat


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


def api(world: World, key: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(
        method,
        f"{world.url}/api{path}",
        headers={"Authorization": f"Bearer {key}", **kw.pop("headers", {})},
        timeout=30,
        **kw,
    )


def error(resp: requests.Response) -> dict:
    body = resp.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_auth_admin_keys_and_master_key_only(world: World, admin: str):
    assert error(requests.get(f"{world.url}/api/me", timeout=10))["code"] == "unauthorized"
    refused = api(world, world.key, "GET", "/me")
    assert refused.status_code == 403 and error(refused)["code"] == "forbidden"
    assert api(world, admin, "GET", "/me").json() == {
        "project": "default",
        "project_name": "Test",
        "scope": "admin",
    }
    assert api(world, MASTER_KEY, "GET", "/customers").status_code == 200


def test_create_read_and_duplicate(world: World, admin: str):
    made = api(
        world,
        admin,
        "POST",
        "/customers",
        json={
            "customer_id": "c1",
            "name": "Acme",
            "email": "a@acme.io",
            "token_balance": 5000,
            "metadata": {"plan": "x"},
        },
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (
        body["customer_id"] == "c1" and body["token_balance"] == 5000 and body["spend_usd"] == "0.000000000"
    )
    assert body["tier"] == {"key": "default", "version": 1} and body["metadata"] == {"plan": "x"}
    assert body["created_at"].endswith("Z")
    assert [e.kind for e in world.ledger("c1")] == ["initial_grant"]
    assert api(world, admin, "GET", "/customers/c1").json() == body
    duplicate = api(world, admin, "POST", "/customers", json={"customer_id": "c1"})
    assert duplicate.status_code == 409 and error(duplicate)["code"] == "conflict"
    missing = api(world, admin, "GET", "/customers/nobody")
    assert missing.status_code == 404 and error(missing)["code"] == "not_found"


def test_list_pages_with_cursors_and_searches(world: World, admin: str):
    for i in range(5):
        api(world, admin, "POST", "/customers", json={"customer_id": f"p{i}", "email": f"p{i}@x.io"})
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        got = api(world, admin, "GET", "/customers", params=params).json()
        seen += [c["customer_id"] for c in got["data"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{i}" for i in range(5)]
    assert [
        c["customer_id"]
        for c in api(world, admin, "GET", "/customers", params={"email": "p3@x.io"}).json()["data"]
    ] == ["p3"]
    assert len(api(world, admin, "GET", "/customers", params={"tier": "default"}).json()["data"]) == 5
    bad = api(world, admin, "GET", "/customers", params={"cursor": "not-ours"})
    assert bad.status_code == 400 and error(bad)["param"] == "cursor"
    assert api(world, admin, "GET", "/customers", params={"limit": 0}).status_code == 400


def test_block_through_the_api_stops_the_proxy(world: World, admin: str):
    api(world, admin, "POST", "/customers", json={"customer_id": "b1"})
    assert api(world, admin, "PATCH", "/customers/b1", json={"blocked": True}).json()["blocked"] is True
    assert chat(world.url, world.key, "b1").status_code == 403
    api(world, admin, "PATCH", "/customers/b1", json={"blocked": False})
    assert chat(world.url, world.key, "b1").status_code == 200
    kinds = [e.type for e in db.session.scalars(select(Event).where(Event.customer_external_id == "b1"))]
    assert kinds == ["customer.created", "customer.blocked", "customer.unblocked"]


def test_tokens_add_and_set_write_ledger_entries(world: World, admin: str):
    api(world, admin, "POST", "/customers", json={"customer_id": "t1", "token_balance": 100})
    added = api(world, admin, "POST", "/customers/t1/tokens", json={"amount": 250, "reason": "promo"})
    assert (
        added.status_code == 200
        and added.json()["balance_after"] == 350
        and added.json()["kind"] == "adjustment"
    )
    set_ = api(world, admin, "POST", "/customers/t1/tokens", json={"amount": 40, "mode": "set"}).json()
    assert (set_["kind"], set_["amount"], set_["balance_after"]) == ("set_balance", -310, 40)
    assert world.customer("t1").token_balance == 40
    for bad, field in [
        ({"amount": "5"}, "amount"),
        ({"amount": -1, "mode": "set"}, "amount"),
        ({"amount": 1, "mode": "double"}, "mode"),
        ({}, "amount"),
        ({"amount": 10**16}, "amount"),
        ({"amount": -41}, "amount"),  # the default tier is prepaid with hard_cap: never below 0 (SPEC 11.2)
    ]:
        resp = api(world, admin, "POST", "/customers/t1/tokens", json=bad)
        assert resp.status_code == 400 and error(resp)["param"] == field, (bad, resp.text)
    assert world.customer("t1").token_balance == 40 and len(world.ledger("t1")) == 3
    down = api(world, admin, "POST", "/customers/t1/tokens", json={"amount": -40, "reason": "chargeback"})
    assert down.status_code == 200 and world.customer("t1").token_balance == 0


def test_a_postpaid_balance_may_go_below_zero_but_never_past_what_it_holds(world: World, admin: str):
    world.add_tier({"key": "postpaid", "name": "Postpaid", "prepaid": False})
    api(
        world, admin, "POST", "/customers", json={"customer_id": "p1", "token_balance": 0, "tier": "postpaid"}
    )
    owed = api(world, admin, "POST", "/customers/p1/tokens", json={"amount": -500, "reason": "owed"})
    assert owed.status_code == 200 and owed.json()["balance_after"] == -500
    # A thousand top-ups of 10**15 later (written directly: the test is about the edge, not the way there)
    db.session.execute(
        update(Customer).where(Customer.external_id == "p1").values(token_balance=10**18 - 100)
    )
    db.session.commit()
    edge = api(world, admin, "POST", "/customers/p1/tokens", json={"amount": 100})
    assert edge.status_code == 200 and edge.json()["balance_after"] == 10**18
    over = api(world, admin, "POST", "/customers/p1/tokens", json={"amount": 1})
    assert over.status_code == 400 and "past the" in error(over)["message"]
    assert world.customer("p1").token_balance == 10**18


def test_tier_change_and_delete(world: World, admin: str):
    world.add_tier({"key": "pro", "name": "Pro"})
    api(world, admin, "POST", "/customers", json={"customer_id": "d1"})
    moved = api(world, admin, "POST", "/customers/d1/tier", json={"tier": "pro"})
    assert moved.json()["tier"] == {"key": "pro", "version": 1}
    assert api(world, admin, "POST", "/customers/d1/tier", json={"tier": "gold"}).status_code == 404
    assert api(world, admin, "DELETE", "/customers/d1").status_code == 204
    assert api(world, admin, "GET", "/customers/d1").status_code == 404


def test_another_projects_admin_key_sees_nothing_here(world: World, admin: str):
    other = create_project(db.session, "other", "Other")
    _, other_key = create_key(db.session, other, "ops", "admin")
    world.commit()
    api(world, admin, "POST", "/customers", json={"customer_id": "mine"})
    for method, path, body in [
        ("GET", "/customers/mine", None),
        ("PATCH", "/customers/mine", {"name": "x"}),
        ("POST", "/customers/mine/tokens", {"amount": 5}),
        ("DELETE", "/customers/mine", None),
    ]:
        assert api(world, other_key, method, path, json=body).status_code == 404
    assert api(world, other_key, "GET", "/customers").json()["data"] == []
    assert world.customer("mine").token_balance == 100_000


def test_malformed_json_and_unknown_fields_are_400(world: World, admin: str):
    resp = api(
        world, admin, "POST", "/customers", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    resp = api(world, admin, "POST", "/customers", json={"customer_id": "u1", "colour": "blue"})
    assert resp.status_code == 400 and error(resp)["param"] == "colour"
    assert world.customer("u1") is None


def test_openapi_document_is_served(world: World):
    doc = requests.get(f"{world.url}/api/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.") and "/api/customers/{customer_id}/tokens" in doc["paths"]
