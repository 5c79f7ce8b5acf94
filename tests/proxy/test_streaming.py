"""Streaming: no buffering, the upstream's final usage is the charge, hang-ups pay for what they got."""

from __future__ import annotations

import json
import threading

import requests

from tests.factories import World, hang_up_after, hang_up_charges


def post(world: World, body: dict, **kw) -> requests.Response:
    return requests.post(
        world.url + "/v1/chat/completions",
        json=body,
        stream=True,
        timeout=30,
        headers={"Authorization": f"Bearer {world.key}"},
        **kw,
    )


def events(resp: requests.Response):
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            yield line[6:]


def body(**extra) -> dict:
    return {
        "model": "gpt-test",
        "user": "s1",
        "stream": True,
        "messages": [{"role": "user", "content": "stream me something"}],
        **extra,
    }


def test_first_chunk_arrives_before_upstream_sends_its_last(world: World):
    world.upstream.stream_gate = threading.Event()
    resp = post(world, body(max_tokens=5))
    it = events(resp)
    first_content = None
    for data in it:
        chunk = json.loads(data)
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            first_content = chunk
            break
    assert first_content is not None
    # The upstream is still holding back its last chunk: nothing was buffered on the way.
    assert not world.upstream.stream_gate.is_set()
    assert world.upstream.chunks_sent < 5
    world.upstream.stream_gate.set()
    rest = list(it)
    assert rest[-1] == b"[DONE]"


def test_charge_equals_upstream_final_usage_and_usage_chunk_hidden(world: World):
    resp = post(world, body(max_tokens=6))
    chunks = [json.loads(d) for d in events(resp) if d != b"[DONE]"]
    assert all(c["choices"] for c in chunks), "the usage-only chunk leaked to a client that did not ask"
    assert not any("usage" in c for c in chunks)
    [record] = world.usage_records("s1")
    prompt = world.upstream.requests[-1]["json"]["messages"]
    assert record.completion_tokens == 6
    assert record.prompt_tokens == 3 + len(prompt[0]["content"].split())
    assert record.tokens_charged == record.total_tokens
    assert record.cost_nusd == -(-(record.prompt_tokens * 150_000_000 + 6 * 600_000_000) // 1_000_000)
    assert not record.client_disconnected
    customer = world.customer("s1")
    assert customer.token_balance == 100_000 - record.total_tokens
    assert customer.reserved_tokens == 0


def test_client_asking_for_usage_gets_exactly_one_usage_chunk(world: World):
    resp = post(world, body(max_tokens=2, stream_options={"include_usage": True}))
    chunks = [json.loads(d) for d in events(resp) if d != b"[DONE]"]
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["completion_tokens"] == 2


def test_client_hanging_up_pays_prompt_plus_streamed_tokens_and_upstream_is_closed(gunicorn_world: World):
    """Against gunicorn, as in production: the dev server's hang-up handling is not the subject."""
    world = gunicorn_world
    n = 4
    record = hang_up_after(world, body(max_tokens=200), b'"content": "tok', n)
    assert world.upstream.chunks_sent < 200
    assert record.client_disconnected
    # TCP tells the gateway of the hang-up only on a write or two after it (the first write draws
    # the RST), and a chunk may be in flight: about n, never the whole answer.
    assert record.completion_tokens in hang_up_charges([f"tok{k} " for k in range(200)], n)
    assert record.prompt_tokens > 0
    customer = world.customer("s1")
    assert customer.token_balance == 100_000 - record.total_tokens
    assert customer.reserved_tokens == 0
