"""`client.responses.create` against Tollgate (issue 14, acceptance 2): an openai deployment takes the
Responses API as it is; an anthropic one gets it translated (through chat) into Messages; JSON and
streams; exact charges; `store: true` refused."""

from __future__ import annotations

import openai
import pytest

from app.metering.pricing import Price
from tests.factories import World

PRICE = Price(3_000_000_000, 15_000_000_000, "config")
GPT_PRICE = Price(150_000_000, 600_000_000, "config")


def client(world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.url + "/v1", api_key=world.key, max_retries=0)


def charged(world: World, customer_id: str, prompt: int, completion: int, price: Price) -> None:
    (record,) = world.usage_records(customer_id)
    assert (record.prompt_tokens, record.completion_tokens, record.endpoint) == (
        prompt,
        completion,
        "responses",
    )
    assert record.cost_nusd == price.cost_nusd(prompt, completion)
    customer = world.customer(customer_id)
    assert customer.token_balance == 100_000 - prompt - completion and customer.reserved_tokens == 0


def test_openai_deployment_json(claude: World):
    response = client(claude).responses.create(
        model="gpt-test", input="Say hello to the nice people", max_output_tokens=5, user="acme"
    )
    assert response.object == "response" and response.output_text == "tok0 tok1 tok2 tok3 tok4"
    sent = claude.upstream.requests[-1]
    assert sent["path"] == "/v1/responses" and sent["headers"]["authorization"] == "Bearer sk-upstream"
    # Nothing is kept upstream either: OpenAI's default would store it.
    assert sent["json"]["store"] is False and sent["json"]["model"] == "fake-model"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 5)
    charged(claude, "acme", 9, 5, GPT_PRICE)


def test_openai_deployment_stream(claude: World):
    events = list(
        client(claude).responses.create(
            model="gpt-test",
            input="Say hello to the nice people",
            max_output_tokens=50,
            safety_identifier="acme",
            stream=True,
        )
    )
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "".join(f"tok{k} " for k in range(10))
    assert events[-1].response.usage.output_tokens == 10
    charged(claude, "acme", 9, 10, GPT_PRICE)  # the customer named by safety_identifier
    assert claude.usage_records("acme")[0].stream is True


def test_anthropic_deployment_json(claude: World):
    response = client(claude).responses.create(
        model="claude-test",
        instructions="Be brief.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
        max_output_tokens=4,
        temperature=0.3,
        user="acme",
    )
    sent = claude.upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["json"] == {
        "model": "claude-fake",
        "max_tokens": 4,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "temperature": 0.3,
        "metadata": {"user_id": "acme"},
    }
    assert response.output_text == "tok0 tok1 tok2 tok3"
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    prompt = 2 + 3 + 2  # the fake's count: the system's words, then 3 and the words a message
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, 4)
    charged(claude, "acme", prompt, 4, PRICE)


def test_anthropic_deployment_stream(claude: World):
    claude.upstream.cache_read_tokens = 12
    events = list(
        client(claude).responses.create(model="claude-test", input="Say hello", user="acme", stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "".join(f"tok{k} " for k in range(10))
    done = events[-1].response
    assert done.output_text == text and done.usage.input_tokens_details.cached_tokens == 12
    prompt = 3 + 2 + 12
    assert (done.usage.input_tokens, done.usage.output_tokens) == (prompt, 10)
    (record,) = claude.usage_records("acme")
    assert (record.prompt_tokens, record.completion_tokens, record.cache_read_tokens) == (prompt, 10, 12)
    assert record.cost_nusd == PRICE.cost_nusd(prompt, 10, cache_read=12)
    assert claude.customer("acme").token_balance == 100_000 - prompt - 10


def test_function_calls_through_an_anthropic_deployment(claude: World):
    claude.upstream.tool_use = True
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]
    response = client(claude).responses.create(
        model="claude-test", input="Weather?", tools=tools, user="acme"
    )
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert (call.call_id, call.name, call.arguments) == ("toolu_fake", "get_weather", '{"city": "Paris"}')
    assert claude.upstream.requests[-1]["json"]["tools"] == [
        {"name": "get_weather", "input_schema": {"type": "object"}}
    ]
    claude.upstream.tool_use = False
    follow_up = [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    client(claude).responses.create(model="claude-test", input=follow_up, tools=tools, user="acme")
    turns = claude.upstream.requests[-1]["json"]["messages"]
    assert turns[1]["content"] == [
        {"type": "tool_use", "id": "toolu_fake", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_fake", "content": "sunny"}]


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_store_true_is_refused_naming_store(claude: World, model):
    with pytest.raises(openai.BadRequestError) as refused:
        client(claude).responses.create(model=model, input="hi", store=True, user="acme")
    assert refused.value.body["param"] == "store" and refused.value.body["code"] == "invalid_request"
    assert claude.upstream.requests == [] and claude.customer("acme") is None


def test_what_needs_a_stored_response_is_refused(claude: World):
    with pytest.raises(openai.BadRequestError) as refused:
        client(claude).responses.create(
            model="gpt-test", input="hi", previous_response_id="resp_1", user="acme"
        )
    assert refused.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_a_tool_run_upstream_is_refused(claude: World, model):
    """Web search and the other built-in tools are billed per use and by results Tollgate never
    sees: no hold could cover them."""
    with pytest.raises(openai.BadRequestError) as refused:
        client(claude).responses.create(model=model, input="hi", tools=[{"type": "web_search"}], user="acme")
    assert refused.value.body["param"] == "tools[0].type"
    assert claude.upstream.requests == [] and claude.customer("acme") is None


def test_the_sdks_stream_helper_through_an_anthropic_deployment(claude: World):
    with client(claude).responses.stream(model="claude-test", input="Say hello", user="acme") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text == "".join(f"tok{k} " for k in range(10))
    assert len(claude.usage_records("acme")) == 1
