"""Across processes: rpm shared through Redis by two gunicorn workers (acceptance 5), a worker
killed mid-stream whose hold the scheduler releases after its expiry (acceptance 7), and
changes made through one worker that the other applies to the next call (issue 10)."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import requests

from app.db import now_utc
from app.extensions import db
from app.metering import audit
from app.scheduler import Scheduler
from tests.conftest import GUNICORN_CONFIG, GUNICORN_KEY, gunicorn_serving
from tests.factories import Turnstile, World, raw_stream
from tests.fakes.upstream import FakeUpstream

REDIS = "redis://127.0.0.1:6379/0"
RPM_CONFIG = """
projects:
  - slug: default
    name: Shared limits
    settings: {new_customer_initial_tokens: 100000, default_tier: rpm60}
    tiers:
      - {key: rpm60, rpm_limit: 60}
    models:
      - name: gpt-test
        deployments: [{provider: openai, base_url: "UPSTREAM", model: fake-model}]
    api_keys:
      - {name: tests, scope: proxy, key: "KEY"}
"""


def settings(app, instance_dir: Path, tmp_path: Path, config: str, upstream: FakeUpstream, **extra) -> dict:
    path = tmp_path / "tollgate.yaml"
    path.write_text(config.replace("UPSTREAM", upstream.base_url).replace("KEY", GUNICORN_KEY))
    return {
        "TOLLGATE_INSTANCE_PATH": str(instance_dir),
        "TOLLGATE_SECRET_KEY": "s" * 48,
        "TOLLGATE_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "TOLLGATE_CONFIG": str(path),
        **extra,
    }


def fresh_connection_call(session: requests.Session, url: str, customer: str) -> tuple[int, str | None]:
    """One call on a connection of its own, so gunicorn may hand it to either worker."""
    resp = session.post(
        url + "/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {GUNICORN_KEY}", "Connection": "close"},
        json={
            "model": "gpt-test",
            "user": customer,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    return resp.status_code, resp.json().get("error", {}).get("code")


def test_rpm_is_shared_by_two_worker_processes_through_redis(app, instance_dir, tmp_path, upstream):
    env = settings(
        app, instance_dir, tmp_path, RPM_CONFIG, upstream, TOLLGATE_REDIS_URL=REDIS, TOLLGATE_WORKERS="2"
    )
    customer = f"rpm-{uuid.uuid4().hex[:12]}"  # Redis windows outlive a test run: a fresh customer
    with gunicorn_serving(env) as served:
        assert len(served.workers()) == 2
        barrier = threading.Barrier(20)

        def worker(_):
            session = requests.Session()
            barrier.wait()
            out = []
            for _ in range(5):
                out.append(fresh_connection_call(session, served.url, customer))
            return out

        with ThreadPoolExecutor(20) as pool:
            outcome = Counter(r for batch in pool.map(worker, range(20)) for r in batch)
    assert outcome == Counter({(200, None): 60, (429, "rate_limit_exceeded"): 40})


def test_a_worker_killed_mid_stream_leaves_a_hold_the_scheduler_releases(
    app, instance_dir, tmp_path, upstream: FakeUpstream
):
    env = settings(app, instance_dir, tmp_path, GUNICORN_CONFIG, upstream)
    turnstile = Turnstile()
    upstream.stream_chunk_pause = turnstile
    with gunicorn_serving(env) as served, app.app_context():
        world = World(app, upstream, served.url)
        body = {
            "model": "gpt-test",
            "user": "doomed",
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "a long story"}],
        }
        sock = raw_stream(served.url, GUNICORN_KEY, body)
        seen = b""
        while b"tok0" not in seen:  # the stream is flowing, its hold taken
            data = sock.recv(65536)
            assert data, "the stream ended early"
            seen += data
        held = world.customer("doomed")
        assert held.reserved_tokens > 0
        [worker] = served.workers()
        os.kill(worker, signal.SIGKILL)
        sock.close()
        assert upstream.client_closed.wait(10), "the killed worker's upstream connection stayed open"
        assert world.customer("doomed").reserved_tokens == held.reserved_tokens  # nobody settled it
        expiry = held.reservation_expires_at
        assert expiry is not None and expiry > now_utc()
        early = Scheduler(db.engine, holder="tests", clock=lambda: expiry - timedelta(seconds=1))
        early.tick()
        assert world.customer("doomed").reserved_tokens == held.reserved_tokens
        late = Scheduler(db.engine, holder="tests", clock=lambda: expiry + timedelta(seconds=1))
        assert "expired-holds" in late.tick()
        customer = world.customer("doomed")
        assert customer.reserved_tokens == 0 and customer.token_balance == 100_000
        with db.engine.connect() as conn:
            assert audit.verify(conn) == []
        # The master has started a new worker: the listening socket queues this until it answers.
        assert requests.get(served.url + "/readyz", timeout=30).status_code == 200


FRESH_CONFIG = """
projects:
  - slug: default
    name: Fresh rules
    settings: {new_customer_initial_tokens: 100000}
    models:
      - name: gpt-test
        price: {input_per_mtok: "1", output_per_mtok: "1"}
        deployments: [{provider: openai, base_url: "UPSTREAM", model: fake-model}]
    api_keys:
      - {name: tests, scope: proxy, key: "KEY"}
      - {name: ops, scope: admin, key: "tg-admin-key-for-fresh-rules-0123"}
"""
ONE_CALL = {"limits": {"standard": {"calls": 1, "tokens": None}}, "prepaid": False}


def test_a_change_made_through_one_worker_applies_to_calls_through_the_other(
    app, instance_dir, tmp_path, upstream
):
    """Acceptance 1 across processes: each change of the in-process freshness tests, made through
    one connection (either worker), and the 10 calls right after it on connections of their own."""
    env = settings(
        app, instance_dir, tmp_path, FRESH_CONFIG, upstream, TOLLGATE_REDIS_URL=REDIS, TOLLGATE_WORKERS="2"
    )
    s = uuid.uuid4().hex[:8]
    admin = {"Authorization": "Bearer tg-admin-key-for-fresh-rules-0123", "Connection": "close"}

    def call(customer: str) -> tuple[int, str | None]:
        return fresh_connection_call(requests.Session(), served.url, customer)

    def change(method: str, path: str, body: dict | None = None) -> dict:
        resp = requests.request(method, served.url + path, headers=admin, json=body, timeout=30)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    def burst(customer: str) -> Counter:
        with ThreadPoolExecutor(10) as pool:
            return Counter(pool.map(call, [customer] * 10))

    def in_turn(customer: str) -> Counter:  # tpm and rpm count settled calls: one after another
        return Counter(call(customer) for _ in range(10))

    with gunicorn_serving(env) as served:
        assert len(served.workers()) == 2
        with ThreadPoolExecutor(8) as pool:  # both workers hold a snapshot without the new tiers
            assert set(pool.map(call, [f"warm-{s}"] * 8)) == {(200, None)}

        change("POST", "/api/tiers", {"key": f"one{s}", **ONE_CALL})
        change("POST", "/api/customers", {"customer_id": f"fresh-{s}", "tier": f"one{s}"})
        assert burst(f"fresh-{s}") == Counter({(200, None): 1, (429, "usage_limit_reached"): 9})

        change("POST", "/budget/new", {"budget_id": f"tpm{s}", "tpm_limit": 2})
        change("POST", "/customer/new", {"user_id": f"tpm-{s}", "budget_id": f"tpm{s}"})
        assert in_turn(f"tpm-{s}") == Counter({(200, None): 1, (429, "rate_limit_exceeded"): 9})

        change("POST", "/api/tiers", {"key": f"cl{s}", "prepaid": False})
        change("POST", "/api/customers", {"customer_id": f"moved-{s}", "tier": f"cl{s}"})
        change("POST", f"/api/tiers/cl{s}/versions/1/clone")
        change("PATCH", f"/api/tiers/cl{s}/versions/2", ONE_CALL)
        change("POST", f"/api/tiers/cl{s}/migrate", {"from_version": 1, "to_version": 2})
        assert burst(f"moved-{s}") == Counter({(200, None): 1, (429, "usage_limit_reached"): 9})

        change("POST", "/budget/new", {"budget_id": f"up{s}"})
        change("POST", "/customer/new", {"user_id": f"up-{s}", "budget_id": f"up{s}"})
        assert call(f"up-{s}") == (200, None)  # the version is locked now: the update clones it
        change("POST", "/budget/update", {"budget_id": f"up{s}", "rpm_limit": 1})
        assert in_turn(f"up-{s}") == Counter({(200, None): 1, (429, "rate_limit_exceeded"): 9})

        change("PATCH", f"/api/customers/warm-{s}", {"blocked": True})
        assert burst(f"warm-{s}") == Counter({(403, "customer_blocked"): 10})
        change("POST", "/customer/unblock", {"user_ids": [f"warm-{s}"]})
        assert burst(f"warm-{s}") == Counter({(200, None): 10})

        change("POST", "/customer/update", {"user_id": f"warm-{s}", "max_budget": 0, "budget_duration": "1d"})
        assert burst(f"warm-{s}") == Counter({(429, "budget_exceeded"): 10})
