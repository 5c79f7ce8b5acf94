"""/healthz, /readyz, /metrics."""

from __future__ import annotations

import requests

from app.extensions import db
from app.keys.operations import create_key
from tests.factories import World


def test_health_and_ready(world: World):
    assert requests.get(world.url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(world.url + "/readyz", timeout=5).status_code == 200


def test_metrics_count_requests_tokens_and_refusals(world: World):
    requests.post(
        world.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={
            "model": "gpt-test",
            "user": "m1",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    requests.post(
        world.url + "/v1/chat/completions", headers={"Authorization": "Bearer nope"}, json={}, timeout=10
    )
    text = requests.get(world.url + "/metrics", timeout=5).text
    assert 'tollgate_requests_total{endpoint="chat/completions",status="200"' in text
    assert 'tollgate_refusals_total{code="invalid_api_key"' in text
    assert 'tollgate_tokens_total{kind="completion"' in text
    assert "tollgate_request_duration_seconds_bucket" in text


def test_metrics_need_loopback_or_an_admin_key(app, world: World):
    client = app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=remote).status_code == 401
    assert (
        client.get(
            "/metrics", environ_base=remote, headers={"Authorization": f"Bearer {world.key}"}
        ).status_code
        == 401
    )
    _, admin_key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    resp = client.get("/metrics", environ_base=remote, headers={"Authorization": f"Bearer {admin_key}"})
    assert resp.status_code == 200 and b"tollgate_requests_total" in resp.data


def test_api_answers_carry_no_session_cookie_or_vary(world: World):
    resp = requests.post(
        world.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "gpt-test", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert resp.status_code == 200
    assert "Cookie" not in resp.headers.get("Vary", "") and "Set-Cookie" not in resp.headers
    assert "Cookie" not in requests.get(world.url + "/healthz", timeout=5).headers.get("Vary", "")
