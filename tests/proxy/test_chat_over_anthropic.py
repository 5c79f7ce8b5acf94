"""Chat completions served by an anthropic-only model (issue 14, acceptance 3): the openai SDK gets
chat completions and chunks, the upstream Anthropic's Messages API; exact charges."""

from __future__ import annotations

import openai
import pytest

from app.metering.pricing import Price
from tests.factories import World, hang_up_after

MESSAGES = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say hello"}]
PROMPT = 3 + 2 + 2  # the fake's count: the system prompt's words, then 3 and the words a message
PRICE = Price(3_000_000_000, 15_000_000_000, "config")


def client(world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.url + "/v1", api_key=world.key, max_retries=0)


def test_json_reply_and_exact_charges(claude: World):
    claude.upstream.cache_read_tokens = 30
    raw = client(claude).chat.completions.with_raw_response.create(
        model="claude-test", messages=MESSAGES, max_tokens=4, stop="END", temperature=0.2, user="acme"
    )
    reply = raw.parse()
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens == PROMPT + 30 and reply.usage.completion_tokens == 4
    assert reply.usage.prompt_tokens_details.cached_tokens == 30
    sent = claude.upstream.requests[-1]
    assert sent["path"] == "/v1/messages" and sent["headers"]["x-api-key"] == "sk-ant-upstream"
    assert sent["json"] == {
        "model": "claude-fake",
        "max_tokens": 4,
        "system": "Be kind.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "metadata": {"user_id": "acme"},
    }
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.completion_tokens, record.cache_read_tokens) == (PROMPT + 30, 4, 30)
    assert record.endpoint == "chat/completions"
    assert record.cost_nusd == PRICE.cost_nusd(PROMPT + 30, 4, cache_read=30)
    assert claude.customer("acme").token_balance == 100_000 - (PROMPT + 30) - 4
    assert int(raw.headers["x-tollgate-tokens-remaining"]) == 100_000 - (PROMPT + 30) - 4


def test_without_max_tokens_the_hold_sets_anthropics_required_one(claude: World):
    client(claude).chat.completions.create(model="claude-test", messages=MESSAGES, user="acme")
    # The default tier reserves 1024 completion tokens: what the call may use is what Anthropic gets.
    assert claude.upstream.requests[-1]["json"]["max_tokens"] == 1024


def test_stream_with_include_usage(claude: World):
    chunks = list(
        client(claude).chat.completions.create(
            model="claude-test",
            messages=MESSAGES,
            max_tokens=50,
            user="acme",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"tok{k} " for k in range(10))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    last = chunks[-1]
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == (PROMPT, 10)
    assert all(c.usage is None for c in chunks[:-1])
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.completion_tokens, record.stream) == (PROMPT, 10, True)
    assert claude.customer("acme").token_balance == 100_000 - PROMPT - 10
    assert claude.upstream.requests[-1]["json"]["stream"] is True


def test_stream_without_include_usage_hides_it(claude: World):
    chunks = list(
        client(claude).chat.completions.create(
            model="claude-test", messages=MESSAGES, max_tokens=50, user="acme", stream=True
        )
    )
    assert all(c.choices and c.usage is None for c in chunks)
    assert claude.usage_records("acme")[0].completion_tokens == 10


def test_tool_calls_both_ways(claude: World):
    claude.upstream.tool_use = True
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = client(claude).chat.completions.create(
        model="claude-test", messages=MESSAGES, tools=tools, tool_choice="required", user="acme"
    )
    sent = claude.upstream.requests[-1]["json"]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": tools[0]["function"]["parameters"],
            "description": "The weather",
        }
    ]
    assert sent["tool_choice"] == {"type": "any"}
    (call,) = reply.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "toolu_fake",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    claude.upstream.tool_use = False
    history = [
        *MESSAGES,
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    client(claude).chat.completions.create(model="claude-test", messages=history, tools=tools, user="acme")
    turns = claude.upstream.requests[-1]["json"]["messages"]
    assert turns[1]["content"][-1] == {
        "type": "tool_use",
        "id": "toolu_fake",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert turns[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_fake", "content": "sunny"}],
    }


def test_streamed_tool_call_arrives_as_tool_call_chunks(claude: World):
    claude.upstream.tool_use = True
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chunks = list(
        client(claude).chat.completions.create(
            model="claude-test", messages=MESSAGES, tools=tools, max_tokens=2, user="acme", stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "toolu_fake" and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city": "Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_an_image_goes_as_an_anthropic_image_block(claude: World):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    client(claude).chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": content}], max_tokens=2, user="acme"
    )
    blocks = claude.upstream.requests[-1]["json"]["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"seed": 7}, "seed"),
    ],
)
def test_a_field_without_counterpart_is_refused_naming_it(claude: World, extra, named):
    with pytest.raises(openai.BadRequestError) as refused:
        client(claude).chat.completions.create(
            model="claude-test", messages=MESSAGES, max_tokens=4, user="acme", **extra
        )
    assert refused.value.body["param"] == named and named in refused.value.body["message"]
    assert claude.upstream.requests == [] and claude.customer("acme") is None


def test_defaults_that_mean_nothing_are_accepted(claude: World):
    client(claude).chat.completions.create(
        model="claude-test",
        messages=MESSAGES,
        max_tokens=4,
        user="acme",
        n=1,
        presence_penalty=0,
        logprobs=False,
    )
    assert len(claude.usage_records("acme")) == 1


def test_an_anthropic_error_comes_back_in_openais_shape(claude: World):
    claude.upstream.fail_status, claude.upstream.fail_times = 429, 1
    with pytest.raises(openai.RateLimitError) as raised:
        client(claude).chat.completions.create(model="claude-test", messages=MESSAGES, user="acme")
    assert raised.value.body == {
        "message": "fake failure",
        "type": "rate_limit_error",
        "param": None,
        "code": None,
    }
    assert (
        claude.usage_records("acme")[0].status == 429 and claude.usage_records("acme")[0].tokens_charged == 0
    )


def test_a_hang_up_mid_stream_is_charged_for_what_was_streamed(claude: World):
    claude.upstream.completion_tokens = 200  # more than the 25 chunks a hang-up may take to notice
    body = {"model": "claude-test", "messages": MESSAGES, "max_tokens": 200, "user": "acme", "stream": True}
    record = hang_up_after(claude, body, b'"content":"tok', relayed=4)
    assert record.client_disconnected is True
    # Anthropic's message_start gave the prompt; the deltas relayed so far are the completion.
    assert record.prompt_tokens == PROMPT
    # Two tokens a relayed delta ("tok7 " is five bytes), at least the four the client read, and
    # no more than the 24 hang_up_after lets the fake send (of 200): the upstream was closed.
    assert record.completion_tokens in {2 * relayed for relayed in range(4, 25)}
    assert claude.customer("acme").reserved_tokens == 0
