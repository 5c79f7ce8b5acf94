"""Failover before the first byte, and regions (acceptance 7)."""

from __future__ import annotations

import requests

from app.extensions import db
from tests.factories import World
from tests.fakes.upstream import refusing_url


class FirstChoice:
    """Deterministic routing for tests: deployments are tried in the order they were configured."""

    def choices(self, population, weights):
        return [population[0]]


def call(world: World, user: str = "f1", model: str = "multi", **extra) -> requests.Response:
    return requests.post(
        world.url + "/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {world.key}"},
        json={
            "model": model,
            "user": user,
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}],
            **extra,
        },
    )


def deployment(base_url: str, model: str, region: str = "us", **extra) -> dict:
    return {"provider": "openai", "base_url": base_url, "model": model, "region": region, **extra}


def ordered(world: World) -> None:
    world.app.extensions["tollgate.gateway"].rng = FirstChoice()


def test_refused_connection_fails_over_and_charges_once(world: World):
    ordered(world)
    world.add_model(
        "multi", [deployment(refusing_url(), "dead"), deployment(world.upstream.base_url, "alive")]
    )
    resp = call(world)
    assert resp.status_code == 200, resp.text
    assert [r["json"]["model"] for r in world.upstream.requests] == ["alive"]
    [record] = world.usage_records("f1")
    assert world.customer("f1").token_balance == 100_000 - record.total_tokens
    assert resp.json()["usage"]["total_tokens"] == record.total_tokens


def test_500_fails_over_to_second_deployment_and_charges_once(world: World):
    ordered(world)
    world.add_model(
        "multi", [deployment(world.upstream.base_url, "first"), deployment(world.upstream.base_url, "second")]
    )
    world.upstream.fail_status, world.upstream.fail_times = 500, 1
    resp = call(world)
    assert resp.status_code == 200
    assert [r["json"]["model"] for r in world.upstream.requests] == ["first", "second"]
    [record] = world.usage_records("f1")
    assert record.status == 200 and record.total_tokens == resp.json()["usage"]["total_tokens"]
    assert world.customer("f1").token_balance == 100_000 - record.total_tokens


def test_streaming_500_fails_over_before_first_byte(world: World):
    ordered(world)
    world.add_model(
        "multi", [deployment(world.upstream.base_url, "first"), deployment(world.upstream.base_url, "second")]
    )
    world.upstream.fail_status, world.upstream.fail_times = 503, 1
    resp = call(world, stream=True)
    assert resp.status_code == 200
    assert resp.text.rstrip().endswith("data: [DONE]")
    assert len(world.usage_records("f1")) == 1


def test_every_deployment_failing_is_502_and_not_charged(world: World):
    world.add_model(
        "multi", [deployment(world.upstream.base_url, "a"), deployment(world.upstream.base_url, "b")]
    )
    world.upstream.fail_status = 500
    resp = call(world)
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_error"
    customer = world.customer("f1")
    assert customer.token_balance == 100_000 and customer.reserved_tokens == 0
    # It reached the upstream, so it has one (uncharged) usage record.
    [record] = world.usage_records("f1")
    assert record.status == 502 and record.tokens_charged == 0 and record.cost_nusd == 0


def test_unreachable_upstreams_leave_no_usage_record(world: World):
    world.add_model("multi", [deployment(refusing_url(), "a")])
    resp = call(world)
    assert resp.status_code == 502
    assert world.usage_records() == []
    assert world.customer("f1").reserved_tokens == 0


def test_upstream_timeout_is_504(world: World):
    import threading

    world.add_model("multi", [deployment(world.upstream.base_url, "slow", timeout_s=1)])
    world.upstream.latency_gate = threading.Event()  # never set: the upstream does not answer
    resp = call(world)
    world.upstream.latency_gate.set()
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "upstream_timeout"
    assert world.customer("f1").token_balance == 100_000


def test_eu_customer_never_reaches_us_deployment(world: World):
    world.add_model(
        "multi",
        [
            deployment(world.upstream.base_url, "in-us", "us"),
            deployment(world.upstream.base_url, "in-eu", "eu"),
        ],
    )
    world.give_customer("eu-only", 5000, allowed_regions=["eu"])
    for _ in range(10):
        resp = call(world, user="eu-only")
        assert resp.status_code == 200
        assert resp.headers["x-tollgate-region"] == "eu"
    assert {r["json"]["model"] for r in world.upstream.requests} == {"in-eu"}


def test_eu_customer_without_eu_deployment_gets_403(world: World):
    world.give_customer("eu-only", 5000, allowed_regions=["eu"])
    resp = call(world, user="eu-only", model="gpt-test")
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "region_not_allowed"
    assert world.upstream.requests == []
    customer = world.customer("eu-only")
    assert customer.token_balance == 5000 and customer.reserved_tokens == 0
    db.session.rollback()
