"""Issue 6, acceptance 4 and 5: another project's admin key finds nothing here, on every route; bad
input on every write route is a 4xx naming the problem, and nothing changes."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.keys.operations import create_key
from app.projects.operations import create_project
from tests.api.test_customers import api, error
from tests.factories import World, chat


@pytest.fixture
def keys(world: World) -> tuple[str, str]:
    _, mine = create_key(db.session, world.project, "ops", "admin")
    other = create_project(db.session, "other", "Other")
    _, theirs = create_key(db.session, other, "ops", "admin")
    world.commit()
    api(world, mine, "POST", "/customers", json={"customer_id": "mine", "token_balance": 500})
    api(world, mine, "POST", "/tiers", json={"key": "secret-plan"})
    api(world, mine, "POST", "/hooks", json={"target_url": "https://x.example/h", "event": "tokens.low"})
    chat(world.url, world.key, "mine")
    return mine, theirs


ROUTES = [
    ("GET", "/customers/mine", None),
    ("PATCH", "/customers/mine", {"name": "stolen"}),
    ("DELETE", "/customers/mine", None),
    ("POST", "/customers/mine/tokens", {"amount": 1000}),
    ("POST", "/customers/mine/tier", {"tier": "default"}),
    ("GET", "/customers/mine/usage", None),
    ("GET", "/customers/mine/ledger", None),
    ("GET", "/customers/mine/requests", None),
    ("GET", "/tiers/secret-plan/versions/1", None),
    ("PATCH", "/tiers/secret-plan/versions/1", {"name": "x"}),
    ("POST", "/tiers/secret-plan/versions/1/clone", None),
    ("POST", "/tiers/secret-plan/migrate", {"from_version": 1, "to_version": 2}),
]


def snapshot(world: World) -> dict:
    db.session.rollback()
    return {
        t.name: db.session.scalar(select(func.count()).select_from(t))
        for t in db.metadata.sorted_tables
        if t.name != "idempotency_records"
    }


def test_another_projects_admin_key_gets_404_on_every_route(world: World, keys):
    mine, theirs = keys
    before = snapshot(world)
    for method, path, body in ROUTES:
        resp = api(world, theirs, method, path, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
        assert error(resp)["code"] == "not_found"
    hook_id = api(world, mine, "GET", "/events").json()  # the feed is per project too
    assert api(world, theirs, "GET", "/events").json()["data"] == []
    assert api(world, theirs, "GET", "/customers").json()["data"] == []
    assert [t["key"] for t in api(world, theirs, "GET", "/tiers").json()["data"]] == ["default"]
    assert api(world, theirs, "GET", "/usage", params={"group_by": "customer"}).json()["data"] == []
    assert hook_id["data"]
    assert snapshot(world) == before
    assert world.customer("mine").name == "mine" and world.customer("mine").token_balance < 500


BAD_WRITES = [
    ("POST", "/customers", {"customer_id": 5}, "customer_id"),
    ("POST", "/customers", {"customer_id": "x" * 300}, "customer_id"),
    ("POST", "/customers", {"customer_id": "ok", "token_balance": -5}, "token_balance"),
    ("POST", "/customers", {"customer_id": "ok", "token_balance": 10**30}, "token_balance"),
    ("POST", "/customers", {"customer_id": "ok", "shedding_tier": "vip"}, "shedding_tier"),
    ("POST", "/customers", {"customer_id": "ok", "email": "not-an-email"}, "email"),
    ("POST", "/customers", {"customer_id": "ok", "allowed_regions": "eu"}, "allowed_regions"),
    ("PATCH", "/customers/mine", {"blocked": "yes"}, "blocked"),
    ("PATCH", "/customers/mine", {"token_balance": 5}, "token_balance"),
    ("POST", "/customers/mine/tokens", {"amount": 1.5}, "amount"),
    ("POST", "/customers/mine/tier", {"tier": "default", "version": 0}, "version"),
    ("POST", "/tiers", {"key": "k", "default_reserve_tokens": 0}, "default_reserve_tokens"),
    ("POST", "/tiers/secret-plan/migrate", {"from_version": "1", "to_version": 2}, "from_version"),
    ("PATCH", "/settings", {"new_customer_initial_tokens": -1}, "new_customer_initial_tokens"),
    ("PATCH", "/settings", {"capacity": 0}, "capacity"),
    ("POST", "/hooks", {"target_url": "https://x.example", "event": "nope"}, "event"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "param"), BAD_WRITES, ids=[f"{m} {p} {f}" for m, p, _, f in BAD_WRITES]
)
def test_bad_input_names_the_field_and_changes_nothing(world: World, keys, method, path, body, param):
    mine, _ = keys
    before = snapshot(world)
    resp = api(world, mine, method, path, json=body)
    assert resp.status_code == 400, resp.text
    assert error(resp)["param"] == param
    assert snapshot(world) == before


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"'])
def test_malformed_bodies_are_400_on_every_write(world: World, keys, raw):
    mine, _ = keys
    before = snapshot(world)
    for method, path in [
        ("POST", "/customers"),
        ("PATCH", "/customers/mine"),
        ("POST", "/customers/mine/tokens"),
        ("POST", "/tiers"),
        ("PATCH", "/settings"),
        ("POST", "/hooks"),
    ]:
        resp = requests.request(
            method,
            f"{world.url}/api{path}",
            data=raw,
            timeout=30,
            headers={"Authorization": f"Bearer {mine}", "Content-Type": "application/json"},
        )
        assert resp.status_code == 400, (method, path, raw, resp.text)
        assert error(resp)["message"]
    assert snapshot(world) == before


def test_invalid_cursors_are_400_on_every_list(world: World, keys):
    mine, _ = keys
    for path in ["/customers", "/customers/mine/ledger", "/customers/mine/requests", "/tiers", "/events"]:
        for cursor in ["garbage", "aWQ6LTE", "!!!"]:
            resp = api(world, mine, "GET", path, params={"cursor": cursor})
            assert resp.status_code == 400 and error(resp)["param"] == "cursor", (path, cursor, resp.text)
