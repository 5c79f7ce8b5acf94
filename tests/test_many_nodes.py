"""Several nodes (SPEC 12; issue 13 acceptance 3): two gunicorn nodes of two workers each and a
scheduler, on one PostgreSQL database and one Redis, keep SPEC 11's invariants, share rate limits
and breakers, and apply changes per SPEC 3.5 on every node; a node that cannot reach Redis refuses
the calls under limits that need it and serves the others. Runs against the machine's PostgreSQL
and Redis in both CI passes (about half a minute)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from flask import Flask
from sqlalchemy.engine import make_url

from app.extensions import db
from tests.conftest import REDIS_URL, ROOT, Served, gunicorn_serving, stop_group
from tests.fakes.upstream import FakeUpstream, refusing_url
from tests.test_gevent_postgres import libpq, server_url

DB = "tollgate_nodes_test"
PROXY_KEY = "tg-nodes-proxy-key-0123456789"
ADMIN_KEY = "tg-nodes-admin-key-0123456789"
CONFIG = """
projects:
  - slug: default
    name: Nodes
    settings: {new_customer_initial_tokens: 100000}
    models:
      - name: demo
        deployments: [{provider: openai, base_url: "UPSTREAM", model: fake-model, region: us}]
      - name: broken
        deployments: [{provider: openai, base_url: "REFUSING", model: fake-model, region: us, timeout_s: 5}]
    tiers:
      - {key: twenty, name: Twenty calls, limits: {standard: {calls: 20}}, on_limit: block}
      - {key: none, name: No calls, limits: {standard: {calls: 0}}, on_limit: block}
      - {key: rpm10, name: Ten a minute, rpm_limit: 10}
    api_keys:
      - {name: proxy, scope: proxy, key: "PROXY_KEY"}
      - {name: admin, scope: admin, key: "ADMIN_KEY"}
"""


@pytest.fixture
def nodes(app: Flask, upstream: FakeUpstream, tmp_path: Path) -> Iterator[tuple[Served, Served, dict]]:
    # The suite's own idle pooled connections (up to TOLLGATE_DB_POOL_SIZE, kept after its
    # concurrency tests) would crowd the server's 100 connections the four workers need.
    with app.app_context():
        db.engine.dispose()
    url = make_url(server_url())
    with psycopg.connect(libpq(str(url), url.database), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    database = url.set(database=DB).render_as_string(hide_password=False)
    shared_redis = REDIS_URL.rsplit("/", 1)[0] + "/9"  # a database of its own, emptied around the test
    redis.Redis.from_url(shared_redis).flushdb()
    config = tmp_path / "config.yaml"
    config.write_text(
        CONFIG.replace("UPSTREAM", upstream.base_url)
        .replace("REFUSING", refusing_url())
        .replace("PROXY_KEY", PROXY_KEY)
        .replace("ADMIN_KEY", ADMIN_KEY)
    )
    env = {
        "TOLLGATE_INSTANCE_PATH": str(tmp_path),
        "TOLLGATE_SECRET_KEY": "n" * 48,
        "TOLLGATE_DATABASE_URL": database,
        "TOLLGATE_REDIS_URL": shared_redis,
        "TOLLGATE_CONFIG": str(config),
        "TOLLGATE_WORKERS": "2",
    }
    scheduler = subprocess.Popen(
        [ROOT / ".venv" / "bin" / "flask", "--app", "wsgi", "scheduler", "run"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with gunicorn_serving(env) as node_a, gunicorn_serving(env) as node_b:
            yield node_a, node_b, env
    finally:
        stop_group(scheduler)
        redis.Redis.from_url(shared_redis).flushdb()


def call(node: Served, user: str, model: str = "demo") -> requests.Response:
    body = {"model": model, "user": user, "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]}
    return requests.post(
        f"{node.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {PROXY_KEY}"},
        timeout=30,
    )


def api(node: Served, method: str, path: str, **kw) -> requests.Response:
    return requests.request(
        method, f"{node.url}/api{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30, **kw
    )


def spread(a: Served, b: Served, n: int, user: str | None = None, model: str = "demo") -> Counter:
    """n calls at once, alternating between the nodes; the codes they got."""
    got: Counter = Counter()
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        answer = call(a if i % 2 else b, user or f"first-{i}", model)
        with lock:
            got[answer.status_code if answer.status_code == 200 else answer.json()["error"]["code"]] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def sql(env: dict, query: str, *args) -> list:
    with psycopg.connect(libpq(env["TOLLGATE_DATABASE_URL"], DB)) as conn:
        return conn.execute(query, args).fetchall()


def test_two_nodes_of_two_workers_share_one_view(nodes):
    a, b, env = nodes
    assert api(a, "POST", "/customers", json={"customer_id": "twenty", "tier": "twenty"}).status_code == 201
    assert api(a, "POST", "/customers", json={"customer_id": "rpm", "tier": "rpm10"}).status_code == 201
    assert api(b, "POST", "/customers", json={"customer_id": "poor", "token_balance": 300}).status_code == 201

    # A block limit of 20 calls, 60 calls over both nodes at once: exactly 20.
    assert spread(a, b, 60, "twenty") == Counter({200: 20, "usage_limit_reached": 40})
    # rpm 10, 30 calls over both nodes at once: exactly 10.
    assert spread(a, b, 30, "rpm") == Counter({200: 10, "rate_limit_exceeded": 20})
    # A hard-capped balance of 300 under 40 calls at once never goes below 0.
    spread(a, b, 40, "poor")
    [(balance,)] = sql(env, "SELECT token_balance FROM customers WHERE external_id = 'poor'")
    assert 0 <= balance < 300
    # 20 concurrent first calls of one new customer: one customer.
    assert spread(a, b, 20, "newcomer")[200] == 20
    assert sql(env, "SELECT count(*) FROM customers WHERE external_id = 'newcomer'") == [(1,)]

    # A breaker opened through node A is seen by node B.
    for _ in range(3):
        assert call(a, "breaker", "broken").status_code == 502
    seen = api(b, "GET", "/health").json()
    assert seen["shared"] is True
    [broken] = [m for m in seen["models"] if m["model"] == "broken"]
    assert [d["state"] for d in broken["deployments"]] == ["unhealthy"]

    # A tier change answered by node A applies to node B's very next call.
    assert call(b, "mover").status_code == 200
    assert api(a, "POST", "/customers/mover/tier", json={"tier": "none"}).status_code == 200
    moved = call(b, "mover")
    assert (moved.status_code, moved.json()["error"]["code"]) == (429, "usage_limit_reached")

    verify = subprocess.run(
        [ROOT / ".venv" / "bin" / "flask", "--app", "wsgi", "ledger", "verify"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_node_that_cannot_reach_redis_refuses_only_the_calls_that_need_it(nodes):
    a, _, env = nodes
    assert api(a, "POST", "/customers", json={"customer_id": "rpm", "tier": "rpm10"}).status_code == 201
    with socket_port() as dead:
        cut_off = {**env, "TOLLGATE_REDIS_URL": f"redis://127.0.0.1:{dead}/0", "TOLLGATE_WORKERS": "1"}
        with gunicorn_serving(cut_off, ready=False) as node_c:
            refused = call(node_c, "rpm")
            assert (refused.status_code, refused.json()["error"]["code"]) == (503, "limits_unavailable")
            assert call(node_c, "free").status_code == 200
            ready = requests.get(f"{node_c.url}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["reasons"][0].startswith("redis: ")
    assert call(a, "rpm").status_code == 200  # the nodes that reach Redis serve it


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port  # nothing listens there
