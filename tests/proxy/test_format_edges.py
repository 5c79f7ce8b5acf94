"""What the formats must get right at their edges (issue 14's review): streams read by event name,
what no hold can cover refused, one-hour cache writes, translations that meet odd input or odd
replies, and a model whose deployments speak different formats."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests

from app.metering.pricing import Price
from app.proxy.formats import FORMATS
from app.proxy.formats.format import Usage
from app.proxy.formats.messages import TOOLS_PROMPT, usage_of
from app.proxy.formats.messages_over_chat import ToEvents
from tests.factories import World

MESSAGES = [{"role": "user", "content": "Say hello to the nice people"}]
PRICE = Price(3_000_000_000, 15_000_000_000, "config")


def anthropic_client(world: World) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=world.url, api_key=world.key, max_retries=0)


def openai_client(world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.url + "/v1", api_key=world.key, max_retries=0)


def post(world: World, path: str, body: dict) -> requests.Response:
    return requests.post(world.url + path, json=body, headers={"x-api-key": world.key}, timeout=30)


def test_a_responses_stream_ends_by_its_event_name_whatever_its_data_says(claude: World):
    """response.completed repeats the request's metadata and tools: a key named "delta" there
    must not hide the end (and its usage) from the meter."""
    events = list(
        openai_client(claude).responses.create(
            model="gpt-test", input="Say hello", user="acme", stream=True, metadata={"delta": "1"}
        )
    )
    assert events[-1].type == "response.completed" and events[-1].response.metadata == {"delta": "1"}
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.completion_tokens) == (3 + 2, 10)  # the upstream's own usage


@pytest.mark.parametrize(
    ("block", "named"),
    [
        (
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            "messages[0].content[1]",
        ),
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
            },
            "messages[0].content[1]",
        ),
        ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "messages[0].content[1].source"),
    ],
)
def test_documents_and_files_no_hold_can_size_are_refused(claude: World, block, named):
    content = [{"type": "text", "text": "Read this"}, block]
    body = {"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    resp = post(claude, "/v1/messages", dict(body, metadata={"user_id": "acme"}))
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith(
        f"invalid_request: {named} "
    )
    assert claude.upstream.requests == [] and claude.customer("acme") is None


def test_server_tools_are_refused_on_messages(claude: World):
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(claude).messages.create(
            model="claude-test", max_tokens=5, messages=MESSAGES, tools=[tool], metadata={"user_id": "acme"}
        )
    assert "tools[0].type" in refused.value.body["error"]["message"]
    assert claude.upstream.requests == []


def test_files_and_stored_prompts_are_refused_on_responses(claude: World):
    part = {"type": "input_file", "file_url": "https://example.com/a.pdf"}
    body = {"model": "gpt-test", "input": [{"role": "user", "content": [part]}], "user": "acme"}
    resp = post(claude, "/v1/responses", body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input[0].content[0]"
    resp = post(claude, "/v1/responses", dict(body, input="hi", prompt={"id": "pmpt_1"}))
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"
    assert claude.upstream.requests == []


def test_anthropics_tool_prompt_is_in_the_estimate():
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES}
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    plain, with_tools = FORMATS["messages"].prompt(body), FORMATS["messages"].prompt(dict(body, tools=tools))
    assert with_tools.upper >= plain.upper + TOOLS_PROMPT


def test_one_hour_cache_writes_are_priced_at_their_own_rate(claude: World):
    claude.upstream.cache_write_tokens, claude.upstream.cache_write_1h_tokens = 100, 60
    message = anthropic_client(claude).messages.create(
        model="claude-test", max_tokens=5, messages=MESSAGES, metadata={"user_id": "acme"}
    )
    prompt = message.usage.input_tokens + 100
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.cache_write_tokens) == (prompt, 100)
    assert record.cost_nusd == PRICE.cost_nusd(prompt, 5, cache_write=100, cache_write_1h=60)
    assert record.cost_nusd > PRICE.cost_nusd(prompt, 5, cache_write=100)  # an hour's write is dearer


def test_a_message_delta_with_null_counts_keeps_what_message_start_said():
    start = usage_of({"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1})
    assert start == Usage(25, 1, 5, 0)
    final = usage_of({"input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 7}, start)
    assert final == Usage(25, 7, 5, 0)


def test_a_reply_that_cannot_be_translated_is_a_failed_call(claude: World):
    """An OpenAI-compatible server's 200 whose shape no translation can read: the client gets
    Anthropic's api_error, nothing is charged and nothing stays held."""
    claude.upstream.raw_reply = json.dumps({"choices": {"0": 1}, "usage": {"prompt_tokens": 3}}).encode()
    with pytest.raises(anthropic.InternalServerError) as raised:
        anthropic_client(claude).messages.create(
            model="gpt-test", max_tokens=5, messages=MESSAGES, metadata={"user_id": "acme"}
        )
    assert raised.value.status_code == 502
    assert raised.value.body["error"]["message"].startswith("upstream_error: ")
    (record,) = claude.usage_records("acme")
    assert (record.status, record.tokens_charged) == (502, 0)
    customer = claude.customer("acme")
    assert customer.reserved_tokens == 0 and customer.token_balance == 100_000


def test_an_openai_refusal_reaches_an_anthropic_client_as_one(claude: World):
    reply = {
        "id": "chatcmpl-1",
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
    claude.upstream.raw_reply = json.dumps(reply).encode()
    message = anthropic_client(claude).messages.create(
        model="gpt-test", max_tokens=5, messages=MESSAGES, metadata={"user_id": "acme"}
    )
    assert message.stop_reason == "refusal" and message.content[0].text == "I can't help."


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        (
            "/v1/messages",
            {
                "model": "gpt-test",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}],
            },
            "messages[0].content[0].source",
        ),
        (
            "/v1/messages",
            {"model": "gpt-test", "max_tokens": 5, "messages": MESSAGES, "tool_choice": {"type": ["auto"]}},
            "tool_choice.type=['auto']",
        ),
        (
            "/v1/messages",
            {
                "model": "gpt-test",
                "max_tokens": 5,
                "messages": [*MESSAGES, {"role": "assistant", "content": "{"}],
            },
            "messages[1] (a final assistant turn, which Anthropic continues)",
        ),
        (
            "/v1/messages",
            {
                "model": "gpt-test",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]}
                ],
            },
            "messages[0].content[0].content",
        ),
        (
            "/v1/responses",
            {"model": "claude-test", "input": "hi", "text": {"format": "json_object"}},
            "text.format",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "claude-test",
                "messages": [{"role": "assistant", "content": "x", "tool_calls": 1}, *MESSAGES],
            },
            "messages[0].tool_calls",
        ),
        ("/v1/chat/completions", {"model": "claude-test", "messages": MESSAGES, "tools": {"a": 1}}, "tools"),
    ],
)
def test_odd_input_to_a_translation_is_a_400_naming_the_field(claude: World, path, body, named):
    resp = post(claude, path, dict(body, user="acme") if path != "/v1/messages" else body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error.get("param") or error["message"]).startswith(named) or named in error["message"]
    assert claude.upstream.requests == []


def test_a_model_served_both_ways_skips_the_deployment_that_cannot_take_a_field(world: World):
    """`seed` has no counterpart at Anthropic: the call goes to the model's openai deployment."""
    world.add_model(
        "both",
        [
            {
                "provider": "anthropic",
                "base_url": world.upstream.root_url,
                "model": "claude-fake",
                "api_key": "k",
            },
            {
                "provider": "openai",
                "base_url": world.upstream.base_url,
                "model": "fake-model",
                "api_key": "k",
            },
        ],
    )
    for _ in range(4):  # whichever the weighted order picks first
        reply = openai_client(world).chat.completions.create(
            model="both", messages=MESSAGES, seed=7, user="acme"
        )
        assert reply.choices[0].message.content
    assert {r["path"] for r in world.upstream.requests} == {"/v1/chat/completions"}


def test_safety_identifier_names_the_customer_only_in_the_responses_api(world: World):
    openai_client(world).chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_body={"safety_identifier": "acme"}
    )
    assert world.customer("acme") is None and world.usage_records()[0].customer_id is None


def test_messages_subpaths_answer_in_anthropics_shape(world: World):
    resp = post(world, "/v1/messages/count_tokens", {"model": "gpt-test", "messages": MESSAGES})
    assert resp.status_code == 404
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "not_found_error"


def test_azures_empty_first_chunk_does_not_start_the_message():
    """Azure's first chunk has no id and no model, only its prompt filter's results."""
    translator = ToEvents()
    out = translator.feed(
        [
            b'data: {"id":"","model":"","choices":[],"prompt_filter_results":[]}',
            b'data: {"id":"c1","model":"gpt","choices":[{"index":0,"delta":{"content":"hi"}}]}',
            b"data: [DONE]",
        ]
    )
    events = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert events[0]["type"] == "message_start" and events[0]["message"]["id"] == "msg_c1"
    assert events[0]["message"]["model"] == "gpt"


def test_a_tool_call_whose_chunks_repeat_its_id_stays_one_block():
    translator = ToEvents()

    def chunk(arguments: str) -> bytes:
        call = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": arguments}}
        data = {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
        return b"data: " + json.dumps(data).encode()

    out = translator.feed([chunk('{"a"'), chunk(": 1}"), b"data: [DONE]"])
    events = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert len(starts) == 1 and starts[0]["content_block"]["id"] == "call_1"
    parts = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert "".join(parts) == '{"a": 1}'


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"web_search_options": {}}, "web_search_options"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_what_no_hold_covers_is_refused_on_chat_completions_too(world: World, extra, named):
    body = dict({"model": "gpt-test", "messages": MESSAGES, "user": "acme"}, **extra)
    resp = post(world, "/v1/chat/completions", body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == named
    assert world.upstream.requests == [] and world.customer("acme") is None


def test_a_stored_prompt_is_named_even_without_input(world: World):
    resp = post(world, "/v1/responses", {"model": "gpt-test", "prompt": {"id": "pmpt_1"}})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"
