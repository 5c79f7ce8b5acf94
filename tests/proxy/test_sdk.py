"""The official openai SDK against a live gateway forwarding to a fake OpenAI server (acceptance 3)."""

from __future__ import annotations

from urllib.parse import unquote

import openai
import pytest

from app.extensions import db
from app.keys.operations import find_by_secret, revoke_key
from tests.factories import World

MESSAGES = [{"role": "user", "content": "Say hello to the nice people"}]


def client(world: World, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.url + "/v1", api_key=key or world.key, max_retries=0)


def charged(world: World, customer_id: str) -> int:
    return sum(r.tokens_charged for r in world.usage_records(customer_id))


def test_user_field_creates_and_charges_customer(world: World):
    reply = client(world).chat.completions.create(model="gpt-test", messages=MESSAGES, user="acme")
    assert reply.choices[0].message.content.startswith("tok0")
    customer = world.customer("acme")
    assert customer is not None and customer.name == "acme"
    assert customer.token_balance == 100_000 - reply.usage.total_tokens
    assert customer.reserved_tokens == 0
    # The upstream saw the user field, the upstream model name and its own key.
    sent = world.upstream.requests[-1]
    assert sent["json"]["user"] == "acme" and sent["json"]["model"] == "fake-model"
    assert sent["headers"]["authorization"] == "Bearer sk-upstream"


@pytest.mark.parametrize("customer_id", ["ünïcødé-客户-🚀", "50% off", "plain-ascii"])
def test_any_printable_customer_id_is_served_and_named_in_the_header(gunicorn_world: World, customer_id):
    """gunicorn refuses non-latin-1 header values: the id is percent-encoded when it must be."""
    world = gunicorn_world
    raw = client(world).chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, user=customer_id
    )
    assert raw.status_code == 200
    assert unquote(raw.headers["x-tollgate-customer"]) == customer_id
    if customer_id == "plain-ascii":
        assert raw.headers["x-tollgate-customer"] == customer_id  # verbatim where it can be
    customer = world.customer(customer_id)
    assert customer.token_balance == 100_000 - raw.parse().usage.total_tokens
    assert len(world.usage_records(customer_id)) == 1


def test_header_identifies_customer_and_names_it(world: World):
    raw = client(world).chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=MESSAGES,
        max_tokens=5,
        extra_headers={"X-Customer-Id": "cust-7", "X-Customer-Name": "Seven Ltd"},
    )
    reply = raw.parse()
    assert reply.usage.completion_tokens == 5
    assert raw.headers["x-tollgate-customer"] == "cust-7"
    assert raw.headers["x-tollgate-model"] == "gpt-test"
    assert raw.headers["x-tollgate-region"] == "us"
    assert raw.headers["x-request-id"].startswith("req_")
    customer = world.customer("cust-7")
    assert customer.name == "Seven Ltd"
    assert (
        int(raw.headers["x-tollgate-tokens-remaining"])
        == customer.token_balance
        == 100_000 - reply.usage.total_tokens
    )


def test_customer_object_is_used_and_removed_before_forwarding(world: World):
    reply = client(world).chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        max_tokens=3,
        extra_body={"customer": {"customer_id": "obj-1", "customer_name": "Object One", "plan": "x"}},
    )
    assert world.customer("obj-1").name == "Object One"
    assert "customer" not in world.upstream.requests[-1]["json"]
    assert charged(world, "obj-1") == reply.usage.total_tokens


def test_streaming_with_sdk_charges_final_usage(world: World):
    stream = client(world).chat.completions.create(
        model="gpt-test", messages=MESSAGES, user="streamer", max_tokens=7, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == [f"tok{i}" for i in range(7)]
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    usage_sent = world.upstream.requests[-1]["json"]["stream_options"]
    assert usage_sent == {"include_usage": True}
    records = world.usage_records("streamer")
    assert len(records) == 1 and records[0].stream and records[0].completion_tokens == 7
    assert world.customer("streamer").token_balance == 100_000 - records[0].total_tokens


def test_streaming_with_usage_requested_sees_usage(world: World):
    stream = client(world).chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        user="u2",
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 4
    assert world.customer("u2").token_balance == 100_000 - usage[0].total_tokens


def test_zero_balance_raises_rate_limit_error_no_tokens(world: World):
    world.give_customer("broke", 0)
    with pytest.raises(openai.RateLimitError) as exc:
        client(world).chat.completions.create(model="gpt-test", messages=MESSAGES, user="broke")
    assert exc.value.body["code"] == "insufficient_tokens"
    assert exc.value.body["message"].startswith("No tokens")
    assert exc.value.response.headers["x-should-retry"] == "false"  # retrying cannot help
    assert world.upstream.requests == []


def test_blocked_customer_raises_permission_denied(world: World):
    world.give_customer("bad", 1000, blocked=True)
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(world).chat.completions.create(model="gpt-test", messages=MESSAGES, user="bad")
    assert exc.value.body["code"] == "customer_blocked"
    assert world.upstream.requests == []


def test_unknown_model_raises_not_found(world: World):
    with pytest.raises(openai.NotFoundError) as exc:
        client(world).chat.completions.create(model="no-such-model", messages=MESSAGES, user="acme")
    assert exc.value.body["code"] == "model_not_found"


def test_revoked_key_raises_authentication_error(world: World):
    client(world).chat.completions.create(model="gpt-test", messages=MESSAGES)
    revoke_key(db.session, find_by_secret(db.session, world.key))
    world.commit()
    with pytest.raises(openai.AuthenticationError) as exc:
        client(world).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert exc.value.body["code"] == "invalid_api_key"


def test_embeddings_and_models(world: World):
    reply = client(world).embeddings.create(model="gpt-test", input=["one two", "three"], user="emb")
    assert len(reply.data) == 2
    assert world.customer("emb").token_balance == 100_000 - reply.usage.total_tokens
    models = client(world).models.list()
    assert [m.id for m in models.data] == ["gpt-test"]


def test_litellm_customer_headers_are_honoured_after_tollgates_own(world: World):
    for header, customer in [("x-litellm-customer-id", "lite-a"), ("x-litellm-end-user-id", "lite-b")]:
        client(world).chat.completions.create(
            model="gpt-test", messages=MESSAGES, max_tokens=2, extra_headers={header: customer}
        )
        assert world.customer(customer) is not None
    # Tollgate's own header wins over LiteLLM's, and both over the body's `user`.
    client(world).chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        max_tokens=2,
        user="from-user",
        extra_headers={"X-Customer-Id": "ours", "x-litellm-customer-id": "theirs"},
    )
    assert world.customer("ours") is not None and world.customer("theirs") is None
    assert world.customer("from-user") is None
