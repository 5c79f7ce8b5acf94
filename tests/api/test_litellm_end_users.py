"""Replicates LiteLLM's tests/test_end_users.py against a running Tollgate (issue 10, acceptance 2).

The same requests and checks as LiteLLM's own end-user tests: /end_user/new in parallel, a customer
held to one region, and an end user's `tpm_limit` budget stopping calls sent with a generated key
and with the master key. Chat calls go through the openai SDK with the gateway's root as base_url
(no /v1), as LiteLLM's tests do.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import requests

from tests.conftest import MASTER_KEY
from tests.factories import World

REGION_MODEL = "gpt-3.5-turbo-end-user-test"
TPM_MODEL = "fake-openai-endpoint"


def admin_post(world: World, path: str, body: dict) -> dict:
    """A LiteLLM management call with the master key; each of LiteLLM's must answer 200."""
    resp = requests.post(
        world.url + path, json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )
    assert resp.status_code == 200, (path, resp.status_code, resp.text)
    return resp.json()


def new_end_user(world: World, user_id: str, region: str | None = None, budget_id: str | None = None) -> dict:
    body: dict = {"user_id": user_id, "allowed_model_region": region, "default_model": None}
    if budget_id is not None:
        body["budget_id"] = budget_id
    return admin_post(world, "/end_user/new", body)


def generate_key(world: World, models: list[str]) -> str:
    made = admin_post(
        world,
        "/key/generate",
        {
            "models": models,
            "aliases": {"mistral-7b": "gpt-3.5-turbo"},
            "duration": None,
            "max_budget": None,
            "budget_duration": None,
            "max_parallel_requests": None,
            "user_id": None,
            "team_id": None,
        },
    )
    return made["key"]


def client(world: World, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=world.url, max_retries=0, timeout=30)


def upstream_model(world: World, region: str) -> dict:
    return {
        "provider": "openai",
        "base_url": world.upstream.base_url,
        "model": "fake-model",
        "region": region,
    }


def test_end_user_new(world: World):
    """Ten /end_user/new calls at once, each a fresh id: every one answers 200 and is kept."""
    user_ids = [str(uuid.uuid4()) for _ in range(10)]
    start = threading.Barrier(len(user_ids))

    def create(user_id: str) -> dict:
        start.wait(30)
        return new_end_user(world, user_id)

    with ThreadPoolExecutor(len(user_ids)) as pool:
        answers = list(pool.map(create, user_ids))
    assert [a["user_id"] for a in answers] == user_ids
    assert all(world.customer(user_id) is not None for user_id in user_ids)


def test_end_user_specific_region(world: World):
    """A customer allowed only `eu` is served by the model's eu deployment, never its us one."""
    world.add_model(REGION_MODEL, [upstream_model(world, "us"), upstream_model(world, "eu")])
    end_user = new_end_user(world, str(uuid.uuid4()), region="eu")
    key = generate_key(world, [REGION_MODEL])

    for _ in range(3):
        result = client(world, key).chat.completions.with_raw_response.create(
            model=REGION_MODEL,
            messages=[{"role": "user", "content": "Hey!"}],
            user=end_user["user_id"],
        )
        assert result.status_code == 200
        assert result.headers.get("x-litellm-model-region") == "eu"
        assert result.headers.get("x-tollgate-region") == "eu"
        assert result.parse().choices[0].message.content


def tpm_limited_calls(world: World, api_key: str | None) -> None:
    """A `tpm_limit: 2` budget on a new end user, then ten calls in a row for that end user: fewer
    than five are served, and each refusal is a 429 `rate_limit_exceeded` (any other error fails
    the test where it is raised). `api_key` None: a key made by /key/generate with `models: []`."""
    world.add_model(TPM_MODEL, [upstream_model(world, "us")])
    budget_id = f"free-tier-{uuid.uuid4()}"
    admin_post(world, "/budget/new", {"budget_id": budget_id, "tpm_limit": 2})
    end_user_id = str(uuid.uuid4())
    new_end_user(world, end_user_id, budget_id=budget_id)
    sdk = client(world, api_key if api_key is not None else generate_key(world, []))

    passed = 0
    refusals: list[openai.RateLimitError] = []
    for _ in range(10):
        try:
            sdk.chat.completions.create(
                model=TPM_MODEL, messages=[{"role": "user", "content": "Hey!"}], user=end_user_id
            )
            passed += 1
        except openai.RateLimitError as refused:
            refusals.append(refused)
    assert passed < 5, f"{passed} of 10 calls passed a tpm_limit of 2"
    assert all(r.status_code == 429 and r.code == "rate_limit_exceeded" for r in refusals), [
        (r.status_code, r.code) for r in refusals
    ]


def test_enduser_tpm_limits_non_master_key(world: World):
    tpm_limited_calls(world, None)


def test_enduser_tpm_limits_with_master_key(world: World):
    tpm_limited_calls(world, MASTER_KEY)
