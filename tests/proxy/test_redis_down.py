"""Losing Redis (SPEC 12; issue 13 acceptance 3, last point): calls under a limit that needs it are
refused with 503 limits_unavailable (fail closed, never counted per process), other calls are
served, health falls back to the process's own view, and /readyz says why."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from app.proxy.health import Health
from app.proxy.ratelimit import Limiter
from tests.conftest import MASTER_KEY
from tests.factories import World, assign, chat


def dead_redis_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there


@pytest.fixture
def redis_gone(world: World) -> Iterator[World]:
    """The gateway's limiter and health view on a Redis that does not answer."""
    gateway = world.app.extensions["tollgate.gateway"]
    limiter, health = gateway.limiter, gateway.health
    url = dead_redis_url()
    gateway.limiter, gateway.health = Limiter(url), Health(url)
    yield world
    gateway.limiter, gateway.health = limiter, health


def test_a_call_under_rate_limits_is_refused_and_the_others_are_served(redis_gone: World):
    world = redis_gone
    limited = world.add_tier({"key": "limited", "name": "Limited", "rpm_limit": 600})
    world.give_customer("limited", 10_000)
    assign(world, "limited", limited)
    world.give_customer("free", 10_000)
    upstream_before = len(world.upstream.requests)

    refused = chat(world.url, world.key, "limited")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "limits_unavailable"
    assert refused.headers["Retry-After"] == "5"
    assert len(world.upstream.requests) == upstream_before  # no upstream reached
    customer = world.customer("limited")
    assert customer.reserved_tokens == 0 and customer.token_balance == 10_000  # the hold given back

    served = chat(world.url, world.key, "free")  # no limit that needs Redis: served
    assert served.status_code == 200, served.text
    assert len(world.upstream.requests) == upstream_before + 1


def test_readyz_says_redis_is_unreachable_and_the_health_view_still_answers(redis_gone: World):
    world = redis_gone
    ready = requests.get(f"{world.url}/readyz", timeout=10)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert len(body["reasons"]) == 1 and body["reasons"][0].startswith("redis: ")
    health = requests.get(
        f"{world.url}/api/health", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert health.status_code == 200
    assert [d["state"] for m in health.json()["models"] for d in m["deployments"]] == ["healthy"]
    assert health.json()["shared"] is False  # it says it is this process's own view
    assert chat(world.url, world.key, "anyone").status_code == 200  # breakers and counts kept locally
