"""Automatic shedding (SPEC 8; issue 13 acceptance 2): by a model's deployments' health, and by
the project's calls in flight against its capacity; the shared view in /api/health."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from app.proxy.health import COOL_DOWN_S
from tests.conftest import MASTER_KEY
from tests.factories import World, chat
from tests.fakes.upstream import FakeUpstream


def api(world: World, path: str) -> dict:
    answer = requests.get(
        f"{world.url}/api{path}", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def code(answer: requests.Response) -> str:
    return "ok" if answer.status_code == 200 else answer.json()["error"]["code"]


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def two(world: World, second: FakeUpstream) -> World:
    """Model `two`: deployment A on the suite's fake upstream (weight 1), B on a second one
    (weight 1,000,000: tried first while healthy); customers low, middle and high; auto on."""
    world.add_model(
        "two",
        [
            {
                "provider": "openai",
                "base_url": world.upstream.base_url,
                "model": "a",
                "region": "us",
                "weight": 1,
            },
            {
                "provider": "openai",
                "base_url": second.base_url,
                "model": "b",
                "region": "us",
                "weight": 10**6,
            },
        ],
    )
    world.set(auto_shedding=True)
    for tier in ("low", "middle", "high"):
        world.give_customer(tier, 100_000, shedding_tier=tier)
    return world


def served(world: World) -> dict[str, str]:
    return {tier: code(chat(world.url, world.key, tier, model="two")) for tier in ("low", "middle", "high")}


def gauge(world: World, model: str) -> int:
    """tollgate_shedding_level of the model, as /metrics shows it."""
    text = requests.get(
        f"{world.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    ).text
    [value] = [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith(f'tollgate_shedding_level{{model="{model}"')
    ]
    return int(value)


def states(world: World) -> tuple[str, list[str]]:
    [model] = [m for m in api(world, "/health")["models"] if m["model"] == "two"]
    return model["shedding_level"], [d["state"] for d in model["deployments"]]


def test_shedding_follows_the_health_of_the_models_deployments(two: World, second: FakeUpstream, monkeypatch):
    world = two
    assert served(world) == {"low": "ok", "middle": "ok", "high": "ok"}
    second.fail_status = 500  # B fails; each call fails over to A
    for _ in range(3):
        assert code(chat(world.url, world.key, "high", model="two")) == "ok"
    assert states(world) == ("low", ["healthy", "unhealthy"])
    assert gauge(world, "two") == 1 and gauge(world, "gpt-test") == 0
    shed = chat(world.url, world.key, "low", model="two")
    assert code(shed) == "load_shed"
    assert 1 <= int(shed.headers["Retry-After"]) <= COOL_DOWN_S  # until B's next probe
    assert served(world) == {"low": "load_shed", "middle": "ok", "high": "ok"}
    assert code(chat(world.url, world.key, "low", model="gpt-test")) == "ok"  # another model: not shed

    world.upstream.fail_status = 500  # A fails too: none healthy
    for _ in range(3):
        assert code(chat(world.url, world.key, "high", model="two")) == "upstream_error"
    assert states(world) == ("middle", ["unhealthy", "unhealthy"])
    assert gauge(world, "two") == 2
    assert served(world) == {"low": "load_shed", "middle": "load_shed", "high": "upstream_error"}

    world.upstream.fail_status = second.fail_status = None  # both answer again
    health = world.app.extensions["tollgate.gateway"].health
    later = health.clock() + COOL_DOWN_S + 1
    monkeypatch.setattr(health, "clock", lambda: later)  # the cool-down is over: probes are due
    assert states(world) == ("middle", ["probing", "probing"])
    for _ in range(2):  # each probes one of them
        assert code(chat(world.url, world.key, "high", model="two")) == "ok"
    assert states(world) == ("off", ["healthy", "healthy"])
    assert served(world) == {"low": "ok", "middle": "ok", "high": "ok"}


def test_without_auto_shedding_an_unhealthy_deployment_sheds_nobody(two: World, second: FakeUpstream):
    world = two
    world.set(auto_shedding=False)
    second.fail_status = 500
    for _ in range(3):
        chat(world.url, world.key, "high", model="two")
    assert states(world) == ("off", ["healthy", "unhealthy"])
    assert served(world) == {"low": "ok", "middle": "ok", "high": "ok"}


def test_capacity_sheds_while_the_projects_calls_in_flight_pass_it(world: World):
    world.set(auto_shedding=True, capacity=4)
    for tier in ("low", "middle", "high"):
        world.give_customer(tier, 100_000, shedding_tier=tier)
    gate = threading.Event()
    world.upstream.latency_gate = gate  # the upstream holds every call until the gate opens
    slow = [threading.Thread(target=chat, args=(world.url, world.key, "high")) for _ in range(4)]
    for t in slow:
        t.start()
    health = world.app.extensions["tollgate.gateway"].health
    project = world.project.id
    for _ in range(600):  # until the four are in flight (30 s at most)
        if health.count(f"flight:p:{project}") >= 4:
            break
        threading.Event().wait(0.05)
    try:
        assert [d["in_flight"] for m in api(world, "/health")["models"] for d in m["deployments"]] == [4]
        assert {t: code(chat(world.url, world.key, t, timeout=5)) for t in ("low", "middle")} == {
            "low": "load_shed",  # 4 in flight > 80% of 4
            "middle": "load_shed",  # and > 95%
        }
    finally:
        gate.set()
        for t in slow:
            t.join()
    assert health.count(f"flight:p:{project}") == 0
    assert code(chat(world.url, world.key, "low")) == "ok"


def changes(world: World) -> list[tuple[str, str, str]]:
    data = [e["data"] for e in api(world, "/events?type=shedding.changed")["data"]]
    return [(d["model"], d["from"], d["to"]) for d in reversed(data)]


def test_each_change_of_a_models_level_is_announced_once(two: World, second: FakeUpstream):
    world = two
    assert served(world)["high"] == "ok"
    assert changes(world) == []
    second.fail_status = 500
    for _ in range(3):
        chat(world.url, world.key, "high", model="two")
    served(world)  # several calls see `low`: one announcement
    assert changes(world) == [("two", "off", "low")]
    [event] = api(world, "/events?type=shedding.changed")["data"]
    assert event["customer_id"] is None
    assert event["data"]["reason"] == "automatic: 1 of 2 deployments unhealthy"

    requests.patch(
        f"{world.url}/api/settings",
        json={"shedding_level": "middle"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )  # the manual level moves every model of the project
    assert sorted(changes(world)[1:]) == [("gpt-test", "off", "middle"), ("two", "low", "middle")]
    assert api(world, "/events?type=shedding.changed")["data"][0]["data"]["reason"] == "manual"


def test_shedding_lifts_when_the_upstream_answers_again_even_if_only_shed_customers_call(
    world: World, monkeypatch
):
    """One deployment, every customer `middle`: once it rests, everyone is shed; after the
    cool-down the next (shed) customer's call is let through as the probe, and heals it."""
    world.add_model(
        "solo", [{"provider": "openai", "base_url": world.upstream.base_url, "model": "s", "region": "us"}]
    )
    world.set(auto_shedding=True)
    world.give_customer("m", 100_000, shedding_tier="middle")
    world.upstream.fail_status = 500
    for _ in range(3):
        assert code(chat(world.url, world.key, "m", model="solo")) == "upstream_error"
    assert code(chat(world.url, world.key, "m", model="solo")) == "load_shed"  # 0 of 1 healthy: middle
    world.upstream.fail_status = None
    health = world.app.extensions["tollgate.gateway"].health
    later = health.clock() + COOL_DOWN_S + 1
    monkeypatch.setattr(health, "clock", lambda: later)
    assert code(chat(world.url, world.key, "m", model="solo")) == "ok"  # the probe, and it heals
    assert code(chat(world.url, world.key, "m", model="solo")) == "ok"


def test_switching_automatic_shedding_off_is_announced_and_a_stale_snapshot_announces_nothing(
    two: World, second: FakeUpstream
):
    world = two
    second.fail_status = 500
    for _ in range(3):
        chat(world.url, world.key, "high", model="two")
    served(world)
    assert changes(world) == [("two", "off", "low")]
    settings = {"Authorization": f"Bearer {MASTER_KEY}"}
    requests.patch(f"{world.url}/api/settings", json={"auto_shedding": False}, headers=settings, timeout=10)
    assert changes(world) == [("two", "off", "low"), ("two", "low", "off")]
    # Calls right after the save may still see the old settings in this process's snapshot:
    # they suspect a change, read the saved settings, and find none.
    served(world)
    assert changes(world) == [("two", "off", "low"), ("two", "low", "off")]


def test_the_health_view_lists_disabled_deployments_too(world: World):
    from sqlalchemy import select

    from app.extensions import db
    from app.models.catalog import Deployment, Model

    world.add_model("spare", [{"provider": "mock", "model": "m", "region": "eu"}])
    spare = db.session.scalar(select(Deployment).join(Model).where(Model.name == "spare"))
    spare.enabled = False
    world.commit()
    seen = api(world, "/health")
    assert seen["shared"] is False  # the suite's app has no Redis: each process its own view
    models = {m["model"]: m for m in seen["models"]}
    assert [(d["id"], d["region"], d["state"]) for d in models["spare"]["deployments"]] == [
        (spare.id, "eu", "healthy")
    ]
    assert models["spare"]["shedding_level"] == "off"
