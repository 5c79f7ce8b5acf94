"""Providers and auth variants: Azure's URL and key header, x-api-key, the master key, prices."""

from __future__ import annotations

import requests

from tests.conftest import MASTER_KEY
from tests.factories import World

BODY = {
    "model": "gpt-test",
    "user": "p1",
    "max_tokens": 3,
    "messages": [{"role": "user", "content": "hi there"}],
}


def post(world: World, body: dict, headers: dict) -> requests.Response:
    return requests.post(world.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_azure_deployment_gets_its_url_api_version_and_api_key_header(world: World):
    world.add_model(
        "azure-model",
        [
            {
                "provider": "azure",
                "base_url": world.upstream.root_url,
                "model": "my-deploy",
                "api_version": "2024-06-01",
                "api_key": "azure-secret",
                "region": "eu",
            }
        ],
    )
    resp = post(world, dict(BODY, model="azure-model"), {"Authorization": f"Bearer {world.key}"})
    assert resp.status_code == 200, resp.text
    sent = world.upstream.requests[-1]
    assert sent["path"] == "/openai/deployments/my-deploy/chat/completions?api-version=2024-06-01"
    assert sent["headers"]["api-key"] == "azure-secret"
    assert "authorization" not in sent["headers"]


def test_x_api_key_header_authenticates(world: World):
    resp = post(world, BODY, {"x-api-key": world.key})
    assert resp.status_code == 200


def test_master_key_picks_project_by_header(world: World):
    assert post(world, BODY, {"Authorization": f"Bearer {MASTER_KEY}"}).status_code == 200
    resp = post(world, BODY, {"Authorization": f"Bearer {MASTER_KEY}", "X-Tollgate-Project": "missing"})
    assert resp.status_code == 401 and "missing" in resp.json()["error"]["message"]


def test_unpriced_config_falls_back_to_genai_prices(world: World):
    world.add_model(
        "gpt-4o-mini", [{"provider": "openai", "base_url": world.upstream.base_url, "model": "m"}]
    )
    resp = post(world, dict(BODY, model="gpt-4o-mini"), {"Authorization": f"Bearer {world.key}"})
    usage = resp.json()["usage"]
    [record] = world.usage_records("p1")
    # genai-prices ships gpt-4o-mini at $0.15 / $0.60 per million tokens.
    expected = -(-(usage["prompt_tokens"] * 150_000_000 + usage["completion_tokens"] * 600_000_000) // 10**6)
    assert record.cost_nusd == expected > 0
    assert world.customer("p1").spend_nusd == expected


def test_model_unknown_to_genai_prices_is_free_but_metered(world: World):
    world.add_model(
        "house-model", [{"provider": "openai", "base_url": world.upstream.base_url, "model": "m"}]
    )
    resp = post(world, dict(BODY, model="house-model"), {"Authorization": f"Bearer {world.key}"})
    [record] = world.usage_records("p1")
    assert record.cost_nusd == 0 and record.total_tokens == resp.json()["usage"]["total_tokens"]


def test_mock_provider_answers_and_streams_with_usage(world: World):
    world.add_model("demo", [{"provider": "mock", "model": "mock"}])
    resp = post(world, dict(BODY, model="demo", max_tokens=5), {"Authorization": f"Bearer {world.key}"})
    reply = resp.json()
    assert len(reply["choices"][0]["message"]["content"].split()) == 5 == reply["usage"]["completion_tokens"]
    stream = post(
        world,
        dict(BODY, model="demo", max_tokens=4, stream=True, user="p2"),
        {"Authorization": f"Bearer {world.key}"},
    )
    assert stream.text.rstrip().endswith("data: [DONE]") and '"usage"' not in stream.text
    [record] = world.usage_records("p2")
    assert record.completion_tokens == 4
    assert world.customer("p2").token_balance == 100_000 - record.total_tokens


def test_hard_cap_lowers_completion_limit_to_what_the_balance_allows(world: World):
    world.give_customer("tight", 60)
    resp = post(world, dict(BODY, user="tight", max_tokens=500), {"Authorization": f"Bearer {world.key}"})
    assert resp.status_code == 200
    sent = world.upstream.requests[-1]["json"]
    assert sent["max_tokens"] < 60
    customer = world.customer("tight")
    assert 0 <= customer.token_balance < 60 and customer.reserved_tokens == 0


def test_default_reserve_is_sent_as_the_completion_limit_under_hard_cap(world: World):
    body = {k: v for k, v in BODY.items() if k != "max_tokens"}
    assert post(world, body, {"Authorization": f"Bearer {world.key}"}).status_code == 200
    assert world.upstream.requests[-1]["json"]["max_tokens"] == 1024
