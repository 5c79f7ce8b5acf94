"""Manual load shedding (SPEC 8, 3.2 step 4; issue 13 acceptance 1): every manual level against
every customer shedding tier, applied to the very next call after the change is answered."""

from __future__ import annotations

import pytest
import requests

from app.extensions import db
from tests.conftest import MASTER_KEY
from tests.factories import World, chat

# SPEC 8: `low` sheds low; `middle` sheds low and middle; `high` is never shed.
SHED = {
    ("off", "low"): False,
    ("off", "middle"): False,
    ("off", "high"): False,
    ("low", "low"): True,
    ("low", "middle"): False,
    ("low", "high"): False,
    ("middle", "low"): True,
    ("middle", "middle"): True,
    ("middle", "high"): False,
}


def set_level(world: World, level: str) -> None:
    answer = requests.patch(
        f"{world.url}/api/settings",
        json={"shedding_level": level},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["shedding_level"] == level


def metric(world: World, name: str) -> float:
    text = requests.get(
        f"{world.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    ).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.mark.parametrize(("level", "tier"), sorted(SHED))
def test_a_manual_level_sheds_exactly_spec_8s_tiers_from_the_next_call(world: World, level: str, tier: str):
    world.give_customer("c", 10_000, shedding_tier=tier)
    assert chat(world.url, world.key, "c").status_code == 200
    before_upstream, before_shed = len(world.upstream.requests), metric(world, "tollgate_shed_total")
    set_level(world, level)  # no waiting: the next call sees it (SPEC 3.5)
    answer = chat(world.url, world.key, "c")
    if not SHED[(level, tier)]:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "load_shed"
    assert answer.headers["Retry-After"] == "60"
    assert len(world.upstream.requests) == before_upstream  # no upstream reached
    assert metric(world, "tollgate_shed_total") == before_shed + 1
    assert len(world.usage_records("c")) == 1  # the first call's only
    customer = world.customer("c")
    assert (
        customer.reserved_tokens == 0
        and customer.token_balance == 10_000 - world.usage_records("c")[0].tokens_charged
    )
    set_level(world, "off")
    assert chat(world.url, world.key, "c").status_code == 200


def test_a_call_naming_no_customer_is_shed_by_the_projects_default_shedding_tier(world: World):
    world.set(default_shedding_tier="low")
    anonymous = {
        "model": "gpt-test",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }

    def call() -> requests.Response:
        return requests.post(
            f"{world.url}/v1/chat/completions",
            json=anonymous,
            headers={"Authorization": f"Bearer {world.key}"},
            timeout=30,
        )

    assert call().status_code == 200
    set_level(world, "low")
    shed = call()
    assert (shed.status_code, shed.json()["error"]["code"]) == (503, "load_shed")
    world.set(default_shedding_tier="high")
    assert call().status_code == 200


def test_shedding_comes_before_the_model_check(world: World):
    """SPEC 3.2: step 4 (shedding) before step 5 (model known)."""
    world.give_customer("c", 10_000, shedding_tier="middle")
    set_level(world, "middle")
    answer = chat(world.url, world.key, "c", model="no-such-model")
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "load_shed")


def test_a_blocked_customer_hears_that_it_is_blocked_first(world: World):
    world.give_customer("c", 10_000, shedding_tier="low", blocked=True)
    set_level(world, "middle")
    answer = chat(world.url, world.key, "c")
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "customer_blocked")
    db.session.rollback()
