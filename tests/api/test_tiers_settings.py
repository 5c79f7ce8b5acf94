"""/api/tiers and /api/settings."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.keys.operations import create_key
from tests.api.test_customers import api, error
from tests.factories import World


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


PRO = {
    "key": "pro",
    "name": "Pro",
    "period": "month",
    "max_budget_usd": "50",
    "limits": {"premium": {"calls": 500, "tokens": None}},
    "on_limit": "restrict",
    "restrict_to": "standard",
}


def test_tier_lifecycle_create_edit_lock_clone_migrate(world: World, admin: str):
    made = api(world, admin, "POST", "/tiers", json=PRO)
    assert made.status_code == 201, made.text
    tier = made.json()
    assert (tier["version"], tier["locked"], tier["customer_count"], tier["max_budget_usd"]) == (
        1,
        False,
        0,
        "50.000000000",
    )
    edited = api(world, admin, "PATCH", "/tiers/pro/versions/1", json={"rpm_limit": 100})
    assert edited.json()["rpm_limit"] == 100
    api(world, admin, "POST", "/customers", json={"customer_id": "c1", "tier": "pro"})
    locked = api(world, admin, "PATCH", "/tiers/pro/versions/1", json={"rpm_limit": 5})
    assert locked.status_code == 409 and error(locked)["code"] == "tier_locked"
    v2 = api(world, admin, "POST", "/tiers/pro/versions/1/clone")
    assert v2.status_code == 201 and v2.json()["version"] == 2 and not v2.json()["locked"]
    again = api(world, admin, "PATCH", "/tiers/pro/versions/1", json={"rpm_limit": 5})
    assert "make v2" not in error(again)["message"]  # v2 exists now: the refusal names no version to make
    assert "Clone it to make a new version" in error(again)["message"]
    moved = api(
        world,
        admin,
        "POST",
        "/tiers/pro/migrate",
        json={"from_version": 1, "to_version": 2, "customer_ids": ["c1"]},
    )
    assert moved.json() == {"moved": 1}
    listed = {
        (t["key"], t["version"]): t["customer_count"]
        for t in api(world, admin, "GET", "/tiers").json()["data"]
    }
    assert listed == {("default", 1): 0, ("pro", 1): 0, ("pro", 2): 1}
    assert api(world, admin, "GET", "/customers/c1").json()["tier"] == {"key": "pro", "version": 2}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**PRO, "limits": {"gold": {"calls": 1}}}, "limits"),
        ({**PRO, "limits": {"premium": {"calls": -1}}}, "limits"),
        ({**PRO, "restrict_to": None}, "restrict_to"),
        ({**PRO, "period": "fortnight"}, "period"),
        ({**PRO, "max_budget_usd": "-1"}, "max_budget_usd"),
        ({**PRO, "colour": "red"}, "colour"),
        ({**PRO, "rpm_limit": "many"}, "rpm_limit"),
    ],
)
def test_bad_tiers_are_400_naming_the_field(world: World, admin: str, body, param):
    resp = api(world, admin, "POST", "/tiers", json=body)
    assert resp.status_code == 400 and error(resp)["param"] == param, resp.text
    assert [t["key"] for t in api(world, admin, "GET", "/tiers").json()["data"]] == ["default"]


def test_settings_read_and_update(world: World, admin: str):
    api(world, admin, "POST", "/tiers", json={"key": "starter"})
    got = api(world, admin, "GET", "/settings").json()
    assert got["default_tier"] == {"key": "default", "version": 1} and got["shedding_level"] == "off"
    changed = api(
        world,
        admin,
        "PATCH",
        "/settings",
        json={"new_customer_initial_tokens": 777, "default_tier": "starter", "low_balance_tokens": 50},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["default_tier"] == {"key": "starter", "version": 1}
    bad = api(world, admin, "PATCH", "/settings", json={"shedding_level": "high"})
    assert bad.status_code == 400 and error(bad)["param"] == "shedding_level"
    world.app.extensions["tollgate.gateway"].cache.invalidate()
    from tests.factories import chat

    assert chat(world.url, world.key, "fresh").status_code == 200
    fresh = api(world, admin, "GET", "/customers/fresh").json()
    assert fresh["tier"] == {"key": "starter", "version": 1}
    assert fresh["token_balance"] < 777
