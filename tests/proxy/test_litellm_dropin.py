"""LiteLLM clients unchanged (SPEC 3, 3.1, 6.1): the unprefixed paths, the customer fields LiteLLM
reads, and LiteLLM's response headers."""

from __future__ import annotations

from decimal import Decimal

import openai
import requests

from app.metering.pricing import to_usd
from tests.factories import World

MESSAGES = [{"role": "user", "content": "Say hello"}]


def root_client(world: World) -> openai.OpenAI:
    """The SDK pointed at the gateway's root, as a LiteLLM configuration without /v1 is."""
    return openai.OpenAI(base_url=world.url, api_key=world.key, max_retries=0)


def test_the_sdk_without_v1_chats_streams_embeds_and_lists_models(world: World):
    client = root_client(world)
    reply = client.chat.completions.create(model="gpt-test", messages=MESSAGES, user="root", max_tokens=3)
    assert reply.usage.completion_tokens == 3
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, user="root", max_tokens=4, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).count("tok") == 4
    vectors = client.embeddings.create(model="gpt-test", input=["one", "two"], user="root")
    assert len(vectors.data) == 2
    assert [m.id for m in client.models.list()] == ["gpt-test"]
    records = world.usage_records("root")
    assert [r.endpoint for r in records] == ["chat/completions", "chat/completions", "embeddings"]
    charged = sum(r.tokens_charged for r in records)
    assert world.customer("root").token_balance == 100_000 - charged


def test_models_is_the_admins_page_for_a_browser_and_the_list_for_a_key(world: World):
    page = requests.get(world.url + "/models", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and "/auth/sign-in" in page.headers["Location"]
    listed = requests.get(world.url + "/models", headers={"x-api-key": world.key}, timeout=10)
    assert listed.json()["data"][0]["id"] == "gpt-test"


def test_unprefixed_errors_have_the_openai_shape(world: World):
    unknown = requests.post(world.url + "/chat/completions", json={}, timeout=10)
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_api_key"
    wrong_method = requests.get(world.url + "/embeddings", timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert "Set-Cookie" not in unknown.headers


def post(world: World, **body) -> requests.Response:
    return requests.post(
        world.url + "/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES, "max_tokens": 2, **body},
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=30,
    )


def test_metadata_user_id_and_litellm_metadata_user_name_the_customer(world: World):
    assert post(world, metadata={"user_id": "meta-user"}).status_code == 200
    assert world.customer("meta-user") is not None
    assert world.upstream.requests[-1]["json"]["metadata"] == {"user_id": "meta-user"}
    assert post(world, litellm_metadata={"user": "lite-user"}).status_code == 200
    assert world.customer("lite-user") is not None
    assert "litellm_metadata" not in world.upstream.requests[-1]["json"]  # LiteLLM's own field
    assert post(world, user="plain", metadata={"user_id": "ignored"}).status_code == 200  # user first
    assert world.customer("plain") is not None and world.customer("ignored") is None
    bad = post(world, metadata={"user_id": 12})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "metadata.user_id"


def test_litellm_response_cost_and_model_region_headers(world: World):
    world.add_model(
        "regional",
        [
            {"provider": "openai", "base_url": world.upstream.base_url, "model": "in-eu", "region": "eu"},
            {"provider": "openai", "base_url": world.upstream.base_url, "model": "in-us", "region": "us"},
        ],
        price={"input_per_mtok": "0.15", "output_per_mtok": "0.60"},
    )
    world.give_customer("eu-only", 5000, allowed_regions=["eu"])
    resp = post(world, model="regional", user="eu-only")
    [record] = world.usage_records("eu-only")
    assert Decimal(resp.headers["x-litellm-response-cost"]) == to_usd(record.cost_nusd) > 0
    assert resp.headers["x-litellm-model-region"] == "eu"
    anywhere = post(world, model="regional", user="anywhere")
    assert "x-litellm-model-region" not in anywhere.headers  # not region-restricted
