"""The anthropic SDK against Tollgate's /v1/messages (issue 14, acceptance 1 and 4): served natively
by an anthropic deployment (the fake upstream's Anthropic API on loopback) and by translation by an
openai one; JSON, streaming, a tools round trip, every error class; exact charges."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest
import requests

from app.extensions import db
from app.metering import audit
from app.metering.pricing import Price
from tests.conftest import MASTER_KEY
from tests.factories import World, hang_up_after

MESSAGES = [{"role": "user", "content": "Say hello to the nice people"}]
PROMPT_WORDS = 3 + 6  # the fake's count: 3 a message, then words
PRICE = Price(3_000_000_000, 15_000_000_000, "config")  # $3 and $15 per million, as configured
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def client(world: World, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=world.url, api_key=key or world.key, max_retries=0)


def charged_exactly(world: World, customer_id: str, prompt: int, completion: int, read=0, written=0) -> None:
    """The balance, the usage record and the cost all say what the upstream reported, exactly."""
    (record,) = world.usage_records(customer_id)
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (read, written)
    assert record.tokens_charged == prompt + completion and record.tokens_unbilled == 0
    assert record.cost_nusd == PRICE.cost_nusd(prompt, completion, read, written)
    assert record.endpoint == "messages"
    customer = world.customer(customer_id)
    assert customer.token_balance == 100_000 - (prompt + completion)
    assert customer.reserved_tokens == 0
    assert customer.spend_nusd == record.cost_nusd


def test_native_json_names_the_customer_by_metadata_and_charges_cache_tokens(claude: World):
    claude.upstream.cache_read_tokens, claude.upstream.cache_write_tokens = 40, 25
    raw = client(claude).messages.with_raw_response.create(
        model="claude-test",
        max_tokens=5,
        system="You are terse.",
        messages=MESSAGES,
        metadata={"user_id": "acme"},
        extra_headers={"anthropic-version": "2023-06-01"},
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].text == "tok0 tok1 tok2 tok3 tok4"
    assert message.stop_reason == "max_tokens"
    usage = message.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (40, 25)
    prompt = usage.input_tokens + 40 + 25
    assert usage.input_tokens == PROMPT_WORDS + 3  # the system prompt's three words
    charged_exactly(claude, "acme", prompt, 5, read=40, written=25)
    assert raw.headers["x-tollgate-customer"] == "acme"
    assert int(raw.headers["x-tollgate-tokens-remaining"]) == 100_000 - prompt - 5
    sent = claude.upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "sk-ant-upstream" and "authorization" not in sent["headers"]
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["json"]["model"] == "claude-fake" and sent["json"]["metadata"] == {"user_id": "acme"}
    assert sent["json"]["system"] == "You are terse."
    # The API's requests list says the cache counts too.
    shown = requests.get(
        claude.url + "/api/customers/acme/requests",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    ).json()["data"][0]
    assert (shown["endpoint"], shown["prompt_tokens"]) == ("messages", prompt)
    assert (shown["cache_read_tokens"], shown["cache_write_tokens"]) == (40, 25)


def test_native_stream_is_passed_through_and_charged(claude: World):
    with client(claude).messages.stream(
        model="claude-test", max_tokens=50, messages=MESSAGES, metadata={"user_id": "acme"}
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(f"tok{k} " for k in range(10))
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 10
    charged_exactly(claude, "acme", PROMPT_WORDS, 10)
    assert claude.usage_records("acme")[0].stream is True


def test_a_hang_up_mid_stream_is_charged_for_the_prompt_and_what_was_streamed(claude: World):
    """message_start says the prompt and a token of output: the deltas relayed say the rest."""
    claude.upstream.completion_tokens = 200
    body = {"model": "claude-test", "max_tokens": 200, "messages": MESSAGES, "stream": True}
    body["metadata"] = {"user_id": "acme"}
    record = hang_up_after(claude, body, b'"text": "tok', relayed=4, path="/v1/messages")
    assert record.client_disconnected is True and record.prompt_tokens == PROMPT_WORDS
    # Two tokens a relayed delta ("tok7 " is five bytes), at least the four the client read, and
    # no more than the 24 hang_up_after lets the fake send (of 200): the upstream was closed.
    assert record.completion_tokens in {2 * relayed for relayed in range(4, 25)}
    assert claude.customer("acme").reserved_tokens == 0


def test_native_tools_round_trip(claude: World):
    claude.upstream.tool_use = True
    first = client(claude).messages.create(
        model="claude-test", max_tokens=20, messages=MESSAGES, tools=TOOLS, metadata={"user_id": "acme"}
    )
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    claude.upstream.tool_use = False
    history = [
        *MESSAGES,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    second = client(claude).messages.create(
        model="claude-test", max_tokens=3, messages=history, tools=TOOLS, metadata={"user_id": "acme"}
    )
    assert second.content[0].text == "tok0 tok1 tok2"
    sent = claude.upstream.requests[-1]["json"]
    assert sent["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_fake",
        "content": "sunny",
    }
    assert sent["tools"] == TOOLS
    assert len(claude.usage_records("acme")) == 2


def test_translated_to_chat_completions_json(claude: World):
    """An openai deployment serves /v1/messages: the upstream gets a chat completion request."""
    message = client(claude).messages.create(
        model="gpt-test",
        max_tokens=4,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=MESSAGES,
        stop_sequences=["END"],
        metadata={"user_id": "acme"},
        cache_control={"type": "ephemeral"},
        extra_body={"temperature": 0.5},  # sampling settings: the API takes them, this SDK version not
    )
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.content[0].text == "tok0 tok1 tok2 tok3" and message.stop_reason == "max_tokens"
    sent = claude.upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-upstream"
    assert sent["json"] == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief."}, *MESSAGES],
        "max_tokens": 4,
        "stop": ["END"],
        "temperature": 0.5,
        "user": "acme",
    }
    prompt = 3 + 2 + PROMPT_WORDS  # the fake counts the system message too
    assert (message.usage.input_tokens, message.usage.output_tokens) == (prompt, 4)
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.completion_tokens, record.endpoint) == (prompt, 4, "messages")
    assert claude.customer("acme").token_balance == 100_000 - prompt - 4
    assert record.cost_nusd == Price(150_000_000, 600_000_000, "config").cost_nusd(prompt, 4)


def test_translated_stream_comes_back_as_anthropic_events(claude: World):
    with client(claude).messages.stream(
        model="gpt-test", max_tokens=12, messages=MESSAGES, metadata={"user_id": "acme"}
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].text == "".join(f"tok{k} " for k in range(12))  # the fake fills max_tokens
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_WORDS, 12)
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.completion_tokens, record.stream) == (PROMPT_WORDS, 12, True)
    assert claude.customer("acme").token_balance == 100_000 - PROMPT_WORDS - 12
    assert claude.upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}


def test_translated_tools_round_trip(claude: World):
    claude.upstream.tool_use = True
    first = client(claude).messages.create(
        model="gpt-test",
        max_tokens=20,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        metadata={"user_id": "acme"},
    )
    sent = claude.upstream.requests[-1]["json"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": TOOLS[0]["input_schema"],
                "description": "The weather in a city",
            },
        }
    ]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert (call.id, call.name, call.input) == ("call_fake", "get_weather", {"city": "Paris"})
    claude.upstream.tool_use = False
    history = [
        *MESSAGES,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "sunny", "is_error": False},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    client(claude).messages.create(
        model="gpt-test", max_tokens=3, messages=history, tools=TOOLS, metadata={"user_id": "acme"}
    )
    turns = claude.upstream.requests[-1]["json"]["messages"]
    assert turns[1]["role"] == "assistant" and turns[1]["tool_calls"] == [
        {
            "id": "call_fake",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert turns[2] == {"role": "tool", "tool_call_id": "call_fake", "content": "sunny"}
    assert turns[3] == {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]}


def test_translated_stream_of_tool_calls(claude: World):
    claude.upstream.stream_tool_calls = True
    response = requests.post(
        claude.url + "/v1/messages",
        headers={"x-api-key": claude.key},
        json={"model": "gpt-test", "max_tokens": 3, "messages": MESSAGES, "tools": TOOLS, "stream": True},
        stream=True,
        timeout=30,
    )
    events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith(b"data:")]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [{"type": "tool_use", "id": "call_fake", "name": "f", "input": {}}]
    parts = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert "".join(parts) == '["k1","k2",'  # the fake's arguments, relayed as they came
    assert [e["type"] for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "max_tokens" and events[-2]["usage"]["output_tokens"] == 3
    assert len(claude.usage_records()) == 1


def test_a_field_without_counterpart_is_refused_naming_it(claude: World):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(claude).messages.create(
            model="gpt-test",
            max_tokens=5,
            messages=MESSAGES,
            metadata={"user_id": "acme"},
            extra_body={"top_k": 5},
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert "top_k" in refused.value.body["error"]["message"]
    # refused before anything was written: no customer, no hold, no record
    assert claude.upstream.requests == [] and claude.usage_records() == []
    assert claude.customer("acme") is None


@pytest.mark.parametrize(
    ("case", "error", "status"),
    [
        ("bad body", anthropic.BadRequestError, 400),
        ("bad key", anthropic.AuthenticationError, 401),
        ("blocked", anthropic.PermissionDeniedError, 403),
        ("unknown model", anthropic.NotFoundError, 404),
        ("too large", anthropic.ContentTooLargeError, 413),
        ("no tokens", anthropic.RateLimitError, 429),
        ("upstream fails", anthropic.InternalServerError, 502),
        ("shed", anthropic.ServiceUnavailableError, 503),
        ("timeout", anthropic.GatewayTimeoutError, 504),
    ],
)
def test_every_error_class_in_anthropics_shape(claude: World, case, error, status):
    kwargs: dict = {
        "model": "claude-test",
        "max_tokens": 5,
        "messages": MESSAGES,
        "metadata": {"user_id": "acme"},
    }
    key = None
    if case == "bad body":
        kwargs["max_tokens"] = 0
    elif case == "bad key":
        key = "tg-not-a-key"
    elif case == "blocked":
        claude.give_customer("acme", 1000, blocked=True)
    elif case == "unknown model":
        kwargs["model"] = "nope"
    elif case == "too large":
        kwargs["messages"] = [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]
    elif case == "no tokens":
        claude.give_customer("acme", 0)
    elif case == "upstream fails":
        claude.upstream.fail_status = 500
    elif case == "shed":
        claude.set(shedding_level="middle")
    elif case == "timeout":
        slow = {"provider": "anthropic", "base_url": claude.upstream.root_url, "model": "m", "timeout_s": 1}
        claude.add_model("claude-slow", [dict(slow, api_key="k")])
        kwargs["model"] = "claude-slow"
        claude.upstream.latency_gate = threading.Event()  # never set: the upstream does not answer
    try:
        with pytest.raises(error) as raised:
            client(claude, key).messages.create(**kwargs)
    finally:
        if claude.upstream.latency_gate is not None:
            claude.upstream.latency_gate.set()
    assert raised.value.status_code == status
    body = raised.value.body
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    code = {400: "invalid_request", 401: "invalid_api_key", 403: "customer_blocked", 404: "model_not_found"}
    code |= {413: "request_too_large", 429: "insufficient_tokens", 502: "upstream_error", 503: "load_shed"}
    code |= {504: "upstream_timeout"}
    assert body["error"]["message"].startswith(f"{code[status]}: ")
    reached = case in ("upstream fails", "timeout")  # the upstream was called: a record, no charge
    assert [r.tokens_charged for r in claude.usage_records()] == ([0] if reached else [])


def test_an_upstream_error_reaches_the_client_in_anthropics_shape_when_translated(claude: World):
    claude.upstream.fail_status, claude.upstream.fail_times = 400, 1
    with pytest.raises(anthropic.BadRequestError) as raised:
        client(claude).messages.create(model="gpt-test", max_tokens=5, messages=MESSAGES)
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "fake failure"},
    }


def test_twenty_threads_two_calls_each_on_a_hard_capped_balance_for_25(claude: World, app):
    """Acceptance 4: never below 0, one usage record per served call, the ledger verifies."""
    per_call = PROMPT_WORDS + 10
    claude.give_customer("hot", 25 * per_call)
    barrier = threading.Barrier(20)

    def worker(_: int) -> list[int]:
        session = requests.Session()
        barrier.wait()
        return [
            session.post(
                claude.url + "/v1/messages",
                timeout=60,
                headers={"x-api-key": claude.key, "anthropic-version": "2023-06-01"},
                json={
                    "model": "claude-test",
                    "max_tokens": 10,
                    "messages": MESSAGES,
                    "metadata": {"user_id": "hot"},
                },
            ).status_code
            for _ in range(2)
        ]

    with ThreadPoolExecutor(20) as pool:
        statuses = [s for batch in pool.map(worker, range(20)) for s in batch]
    served = statuses.count(200)
    assert served + statuses.count(429) == 40 and 0 < served <= 25
    customer = claude.customer("hot")
    assert customer.token_balance >= 0 and customer.reserved_tokens == 0
    records = claude.usage_records("hot")
    assert len(records) == served == len(claude.upstream.requests)
    assert customer.token_balance == 25 * per_call - sum(r.tokens_charged for r in records)
    with db.engine.connect() as conn:
        assert audit.verify(conn) == []
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
