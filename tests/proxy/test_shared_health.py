"""The health view shared through Redis (SPEC 8, 12): what one process sees of breakers and calls
in flight, every other sees, within a second (here: at once, for a process that has not read it)."""

from __future__ import annotations

from app.proxy.health import COOL_DOWN_S, FAILURES_TO_OPEN, Health
from tests.conftest import REDIS_URL


def test_a_breaker_opened_by_one_process_rests_the_deployment_for_another(redis_prefix: str):
    node_a, node_b = Health(REDIS_URL, redis_prefix), Health(REDIS_URL, redis_prefix)
    for _ in range(FAILURES_TO_OPEN):
        node_a.failed(7)
    view = node_b.view(7)
    assert (view.state, view.consecutive_failures) == ("unhealthy", FAILURES_TO_OPEN)
    assert 1 <= view.retry_after <= COOL_DOWN_S
    assert node_b.resting(7)


def test_one_probe_at_a_time_across_processes_and_a_success_heals_for_all(redis_prefix: str):
    node_a, node_b = Health(REDIS_URL, redis_prefix), Health(REDIS_URL, redis_prefix)
    for _ in range(FAILURES_TO_OPEN):
        node_a.failed(7)
    later = node_a.clock() + COOL_DOWN_S + 1
    node_a.clock = node_b.clock = lambda: later
    assert node_b.view(7).state == "probing"
    assert node_a.take_probe(7, 60) is True
    assert node_b.take_probe(7, 60) is False  # node A's call is probing it
    node_a.succeeded(7)
    fresh = Health(REDIS_URL, redis_prefix)
    assert fresh.view(7).state == "healthy"


def test_calls_in_flight_are_counted_across_processes_and_a_dead_ones_expire(redis_prefix: str):
    node_a, node_b = Health(REDIS_URL, redis_prefix), Health(REDIS_URL, redis_prefix)
    flying, first = node_a.fly("flight:p:1")
    assert flying == 1
    flying, second = node_b.fly("flight:p:1")
    assert flying == 2
    assert node_a.count("flight:p:1") == 2
    first.release()
    assert node_b.count("flight:p:1") == 1
    # A process that died holding a call: its place ends with the flight's time to live.
    much_later = node_a.clock() + 16 * 60
    node_b.clock = lambda: much_later
    assert node_b.count("flight:p:1") == 0
    second.release()
