"""Self-check for the fake upstream, using only the standard library HTTP client."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request

import pytest

from .upstream import FakeUpstream, refusing_url


@pytest.fixture
def fake():
    server = FakeUpstream().start()
    try:
        yield server
    finally:
        server.stop()


def _conn(fake: FakeUpstream) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)


def _post(conn: http.client.HTTPConnection, path: str, body: dict) -> http.client.HTTPResponse:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return conn.getresponse()


def _next_event(resp: http.client.HTTPResponse) -> str | None:
    """Read one SSE event's data; None at the end of the body."""
    data = []
    while True:
        line = resp.readline()
        if not line:
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                return "\n".join(data)
            continue
        if line.startswith(b"data: "):
            data.append(line[6:].decode())


MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "hello there friend"}]},
]
PROMPT_TOKENS = 2 + 3 + 3 + 3  # words + 3 per message


def test_non_stream_usage(fake):
    conn = _conn(fake)
    resp = _post(conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES, "max_tokens": 5})
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/json"
    body = json.loads(resp.read())
    assert body["object"] == "chat.completion"
    assert body["model"] == "m1"
    assert body["id"].startswith("chatcmpl-fake-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 tok3 tok4"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 5,
        "total_tokens": PROMPT_TOKENS + 5,
    }

    # keep-alive: a second request reuses the same socket
    sock = conn.sock
    resp = _post(conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES})
    body = json.loads(resp.read())
    assert conn.sock is sock
    assert body["usage"]["completion_tokens"] == 10
    assert body["choices"][0]["finish_reason"] == "stop"
    conn.close()

    assert len(fake.requests) == 2
    rec = fake.requests[0]
    assert rec["path"] == "/v1/chat/completions"
    assert rec["headers"]["content-type"] == "application/json"
    assert rec["json"]["max_tokens"] == 5


def test_stream_with_usage_is_incremental(fake):
    gate = threading.Event()
    fake.stream_gate = gate
    conn = _conn(fake)
    resp = _post(
        conn,
        "/v1/chat/completions",
        {
            "model": "m1",
            "messages": MESSAGES,
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"

    first = json.loads(_next_event(resp))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None
    content = json.loads(_next_event(resp))
    assert content["choices"][0]["delta"] == {"content": "tok0 "}
    # the stream is still held before its last chunk, yet we already got this one
    assert not gate.is_set()
    assert fake.chunks_sent <= 4
    gate.set()

    events = []
    while (ev := _next_event(resp)) is not None:
        events.append(ev)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "tok0 " + "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 5,
        "total_tokens": PROMPT_TOKENS + 5,
    }
    assert fake.chunks_sent == 5

    # without include_usage: no usage key and no usage chunk
    resp = _post(
        conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True}
    )
    events = []
    while (ev := _next_event(resp)) is not None:
        events.append(ev)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 4
    assert all("usage" not in c for c in chunks)
    conn.close()


def test_fail_times(fake):
    fake.fail_status = 500
    fake.fail_times = 1
    conn = _conn(fake)
    resp = _post(conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES})
    assert resp.status == 500
    assert json.loads(resp.read())["error"]["message"] == "fake failure"
    resp = _post(conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES})
    assert resp.status == 200
    resp.read()
    conn.close()
    assert len(fake.requests) == 2
    fake.reset()
    assert fake.requests == [] and fake.fail_status is None


def test_disconnect_after_chunks(fake):
    fake.disconnect_after_chunks = 3
    conn = _conn(fake)
    resp = _post(conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES, "stream": True})
    # read() on a chunked body raises IncompleteRead if the terminating chunk never came
    # (readline() would hide that and just report EOF)
    with pytest.raises(http.client.IncompleteRead) as excinfo:
        resp.read()
    conn.close()
    raw = excinfo.value.partial.decode()
    events = [e[len("data: ") :] for e in raw.split("\n\n") if e.startswith("data: ")]
    assert "[DONE]" not in events
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events]
    assert contents == ["", "tok0 ", "tok1 ", "tok2 "]
    assert fake.chunks_sent == 3


def test_client_close_is_detected(fake):
    fake.stream_chunk_pause = threading.Event()  # never set: hold the stream open
    conn = _conn(fake)
    resp = _post(conn, "/v1/chat/completions", {"model": "m1", "messages": MESSAGES, "stream": True})
    _next_event(resp)
    assert json.loads(_next_event(resp))["choices"][0]["delta"]["content"] == "tok0 "
    conn.close()
    resp.close()
    assert fake.client_closed.wait(10)
    assert fake.chunks_sent == 1


def test_other_endpoints(fake):
    with urllib.request.urlopen(fake.base_url + "/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "fake-model"

    req = urllib.request.Request(
        fake.base_url + "/embeddings",
        data=json.dumps({"model": "e", "input": ["a b", "c"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    assert [len(d["embedding"]) for d in body["data"]] == [8, 8]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}

    conn = _conn(fake)
    path = "/openai/deployments/dep1/chat/completions?api-version=2024-06-01"
    resp = _post(conn, path, {"messages": MESSAGES, "max_tokens": 1})
    assert resp.status == 200
    assert json.loads(resp.read())["model"] == "dep1"
    resp = _post(conn, "/nope", {})
    assert resp.status == 404
    assert "error" in json.loads(resp.read())
    conn.close()
    assert fake.requests[2]["path"] == path

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(refusing_url() + "/models", timeout=5)
