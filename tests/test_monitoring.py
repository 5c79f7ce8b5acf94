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


def test_a_projects_admin_key_sees_only_its_own_projects_samples(app, world: World):
    from app.projects.operations import create_project
    from tests.conftest import MASTER_KEY
    from tests.factories import chat

    other = create_project(db.session, "other", "Other")
    world.commit()
    _, other_proxy = create_key(db.session, other, "app", "proxy")
    _, other_admin = create_key(db.session, other, "ops", "admin")
    world.commit()
    assert chat(world.url, world.key, "a1").status_code == 200  # project default: served
    assert chat(world.url, other_proxy, "b1").status_code == 404  # project other has no model
    chat(world.url, "tg-not-a-key", "x")  # no project at all
    client = app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}

    def scrape(key: str) -> list[str]:
        resp = client.get("/metrics", environ_base=remote, headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200
        return [line for line in resp.data.decode().splitlines() if not line.startswith("#")]

    own = scrape(other_admin)
    assert own and all('project="other"' in line for line in own)
    assert any('code="model_not_found"' in line for line in own)
    everything = "\n".join(scrape(MASTER_KEY))
    for label in ('project="default"', 'project="other"', 'project=""'):
        assert label in everything
    assert 'tollgate_deployment_healthy{deployment="' in everything
    assert 'tollgate_tokens_total{kind="completion",project="default"' in everything
    spend = [line for line in everything.splitlines() if line.startswith("tollgate_spend_usd_total")]
    assert spend and all(line.rsplit(" ", 1)[1].count(".") == 1 for line in spend)
