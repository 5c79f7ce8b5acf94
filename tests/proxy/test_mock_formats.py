"""The built-in mock answers every format (issue 14): `make run`'s demo model works with the openai
SDK's chat completions and Responses, and with the anthropic SDK, JSON and streams, charged by the
usage it reports."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.factories import World

ASK = "Say hello to the nice people"


@pytest.fixture
def demo(world: World) -> World:
    world.add_model("demo", [{"provider": "mock", "model": "mock"}])
    return world


def charged_as_reported(world: World, customer: str, prompt: int, completion: int, endpoint: str) -> None:
    (record,) = world.usage_records(customer)
    assert (record.prompt_tokens, record.completion_tokens, record.endpoint) == (prompt, completion, endpoint)
    assert world.customer(customer).token_balance == 100_000 - prompt - completion


def test_anthropic_sdk_json_and_stream(demo: World):
    sdk = anthropic.Anthropic(base_url=demo.url, api_key=demo.key, max_retries=0)
    message = sdk.messages.create(
        model="demo", max_tokens=5, messages=[{"role": "user", "content": ASK}], metadata={"user_id": "a"}
    )
    assert (
        message.content[0].text == "Hello from Tollgate's mock model." and message.stop_reason == "max_tokens"
    )
    charged_as_reported(demo, "a", message.usage.input_tokens, 5, "messages")
    with sdk.messages.stream(
        model="demo", max_tokens=100, messages=[{"role": "user", "content": ASK}], metadata={"user_id": "b"}
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 24 == final.usage.output_tokens and final.stop_reason == "end_turn"
    charged_as_reported(demo, "b", final.usage.input_tokens, 24, "messages")


def test_responses_json_and_stream(demo: World):
    sdk = openai.OpenAI(base_url=demo.url + "/v1", api_key=demo.key, max_retries=0)
    response = sdk.responses.create(model="demo", input=ASK, max_output_tokens=3, user="a")
    assert response.output_text == "Hello from Tollgate's" and response.status == "incomplete"
    charged_as_reported(demo, "a", response.usage.input_tokens, 3, "responses")
    events = list(sdk.responses.create(model="demo", input=ASK, user="b", stream=True))
    done = events[-1].response
    assert events[-1].type == "response.completed" and len(done.output_text.split()) == 24
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == done.output_text
    charged_as_reported(demo, "b", done.usage.input_tokens, 24, "responses")


def test_the_openai_sdks_responses_stream_helper(demo: World):
    """`client.responses.stream()` checks every event's place in the stream (content parts
    included) and gives the final response."""
    sdk = openai.OpenAI(base_url=demo.url + "/v1", api_key=demo.key, max_retries=0)
    with sdk.responses.stream(model="demo", input=ASK, user="a") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text and len(text.split()) == 24
    charged_as_reported(demo, "a", final.usage.input_tokens, 24, "responses")
