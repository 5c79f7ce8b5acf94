"""A fake OpenAI-compatible upstream, served over real HTTP for gateway tests. It also speaks
Anthropic's Messages API at /v1/messages (JSON and its stream events, `x-api-key` and
`anthropic-version` required, errors in Anthropic's shape), and OpenAI's Responses API at
/v1/responses (JSON and its stream events).

Standard library only. Usage::

    fake = FakeUpstream().start()
    try:
        ...  # point the gateway at fake.base_url
    finally:
        fake.stop()

The server speaks HTTP/1.1 with keep-alive, so pooled clients can reuse
connections. Streams use chunked transfer encoding: each SSE event is written
as its own HTTP chunk and flushed at once, so the client receives events one at
a time as they are sent.

Tests change behaviour through plain attributes (``fail_status``,
``latency_gate``, ``stream_gate``, ...), and ``reset()`` puts them back to
their defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FakeUpstream", "refusing_url"]

GATE_TIMEOUT = 30.0  # seconds a gate is waited on before going ahead anyway
_POLL = 0.02  # interval for checking whether the peer closed while waiting


def refusing_url() -> str:
    """Return a ``http://127.0.0.1:PORT/v1`` URL where nothing is listening."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    finally:
        s.close()
    return f"http://127.0.0.1:{port}/v1"


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return _words(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += _words(part["text"])
            elif isinstance(part, str):
                total += _words(part)
        return total
    return 0


def count_prompt_tokens(messages: Any) -> int:
    """Count words in every message's content, plus 3 for each message."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for msg in messages:
        total += 3
        if isinstance(msg, dict):
            total += _content_words(msg.get("content"))
    return total


# The body-counting mode: a provider that renders every part of the body it receives into the
# prompt (messages with their keys, tools and their schemas, response_format...) and tokenizes it at
# the densest rates known for text: one token per two UTF-8 bytes, and every digit a token of its
# own (Llama's and Qwen's tokenizers). Images count at gpt-4o's documented maximum (a 2048x768
# image in high detail: 85 + 8 tiles x 170).
IMAGE_TOKENS = 1445
_NOT_RENDERED = ("model", "user", "stream_options")


def count_body_tokens(body: dict) -> int:
    """Prompt tokens of the whole body: everything but its top-level settings (numbers, flags,
    the model and user names, stream_options), images at IMAGE_TOKENS each."""
    rendered = {
        k: v
        for k, v in body.items()
        if k not in _NOT_RENDERED and not (v is None or isinstance(v, bool | int | float))
    }
    images = 0
    for message in rendered.get("messages") or []:
        parts = message.get("content") if isinstance(message, dict) else None
        if isinstance(parts, list):
            kept = [p for p in parts if not (isinstance(p, dict) and p.get("type") == "image_url")]
            images += len(parts) - len(kept)
            message["content"] = kept
    text = json.dumps(rendered, ensure_ascii=False, separators=(",", ":"))
    size, digits = len(text.encode("utf-8", "surrogatepass")), sum(c in "0123456789" for c in text)
    return -(-(size - digits) // 2) + digits + images * IMAGE_TOKENS


def _fake_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round((b / 127.5) - 1.0, 6) for b in digest[:8]]


def _anthropic_error(status: int, message: str) -> dict:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
    kind = kinds.get(status, "rate_limit_error" if status == 429 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def count_anthropic_tokens(body: dict) -> int:
    """Words of the system prompt and of every message's text (tool results' included), plus 3
    a message: the fake's tokenizer for Anthropic's API."""
    total = _content_words(body.get("system"))
    for message in body.get("messages") or []:
        total += 3
        content = message.get("content") if isinstance(message, dict) else None
        total += _content_words(content)
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                total += _content_words(block.get("content"))
    return total


def _error_body(message: str, type_: str, code: Any = None) -> dict:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for idle keep-alive connections
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of new connections from two gateway workers
    # overflowed it and the kernel reset some (real upstreams listen with backlogs in the thousands).
    request_queue_size = 1024
    fake: FakeUpstream


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without this, Nagle and delayed ACKs add 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    # -- plumbing ----------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # skip trailers up to the blank line
                    while True:
                        trailer = self.rfile.readline()
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _peer_closed(self) -> bool:
        """True if the client has closed its end (EOF, or the socket is unusable)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _wait(self, event: threading.Event) -> bool:
        """Wait up to GATE_TIMEOUT for an event.

        Returns False if the client hung up or the server is stopping while
        waiting (and records that in ``client_closed`` if it was the client).
        """
        fake = self.server.fake
        deadline = time.monotonic() + GATE_TIMEOUT
        while True:
            if event.wait(_POLL):
                return True
            if fake._stopping.is_set():
                return False
            if self._peer_closed():
                fake.client_closed.set()
                return False
            if time.monotonic() >= deadline:
                return True  # go ahead anyway after the timeout

    def _send_json(self, status: int, body: Any, extra_headers: dict | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.server.fake.client_closed.set()
            self.close_connection = True

    def _send_raw(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    # -- dispatch ----------------------------------------------------------

    def _record(self) -> Any:
        raw = self._read_body()
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        self.server.fake._record(
            {
                "path": self.path,
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": parsed,
            }
        )
        return parsed

    def do_GET(self) -> None:
        self._record()
        route = urlsplit(self.path).path.rstrip("/")
        if route == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": "fake-model",
                            "object": "model",
                            "created": 1700000000,
                            "owned_by": "fake",
                        }
                    ],
                },
            )
        else:
            self._not_found()

    def do_POST(self) -> None:
        body = self._record()
        fake = self.server.fake
        failure = fake._take_failure()
        route = urlsplit(self.path).path.rstrip("/")
        if failure is not None:
            body = _error_body("fake failure", "server_error")
            if route == "/v1/messages":
                body = _anthropic_error(failure, "fake failure")
            self._send_json(failure, body, extra_headers=fake.fail_headers)
            return

        deployment: str | None = None
        parts = route.split("/")
        # /openai/deployments/{name}/chat/completions | /embeddings
        if len(parts) >= 5 and parts[1] == "openai" and parts[2] == "deployments":
            deployment = parts[3]
            route = "/v1/" + "/".join(parts[4:])

        if not isinstance(body, dict):
            if route in ("/v1/chat/completions", "/v1/embeddings"):
                self._send_json(
                    400, _error_body("request body must be a JSON object", "invalid_request_error")
                )
            else:
                self._not_found()
            return

        if route == "/v1/messages":
            self._messages(body)
        elif route == "/v1/responses":
            self._responses(body)
        elif route == "/v1/chat/completions":
            self._chat(body, deployment)
        elif route == "/v1/embeddings":
            self._embeddings(body, deployment)
        else:
            self._not_found()

    def do_PUT(self) -> None:
        self._record()
        self._not_found()

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    def _not_found(self) -> None:
        self._send_json(
            404,
            _error_body(
                f"Unknown request URL: {self.command} {self.path}", "invalid_request_error", "unknown_url"
            ),
        )

    # -- endpoints ---------------------------------------------------------

    def _chat(self, body: dict, deployment: str | None) -> None:
        fake = self.server.fake
        model = body.get("model") or deployment or "fake-model"
        limit = next((body[f] for f in fake.limit_fields if body.get(f) is not None), None)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            n = limit
            finish_reason = "length"
        else:
            n = int(fake.completion_tokens)
            finish_reason = "stop"
        choices = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 1 else 1
        if fake.count_whole_body:
            prompt_tokens = count_body_tokens(json.loads(json.dumps(body)))
        else:
            prompt_tokens = count_prompt_tokens(body.get("messages"))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n * choices,
            "total_tokens": prompt_tokens + n * choices,
        }
        completion_id = fake._next_id()
        created = int(time.time())

        if body.get("stream") is True:
            opts = body.get("stream_options")
            include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
            self._stream(completion_id, created, model, n, finish_reason, usage, include_usage)
            return

        gate = fake.latency_gate
        if gate is not None and not self._wait(gate):
            self.close_connection = True
            return
        if fake.raw_reply is not None:
            self._send_raw(200, fake.raw_reply, fake.raw_content_type)
            return
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(f"tok{i}" for i in range(n))}
        tools = body.get("tools")
        if fake.tool_use and tools:
            arguments = '{"city": "Paris"}'
            function = {"name": tools[0]["function"]["name"], "arguments": arguments}
            message["tool_calls"] = [{"id": "call_fake", "type": "function", "function": function}]
            finish_reason = "tool_calls"
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": i,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                    for i in range(choices)
                ],
                "usage": usage,
            },
        )

    def _stream(
        self,
        completion_id: str,
        created: int,
        model: str,
        n: int,
        finish_reason: str,
        usage: dict,
        include_usage: bool,
    ) -> None:
        fake = self.server.fake
        fake.chunks_sent = 0

        def chunk(delta: dict, finish: str | None) -> dict:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                obj["usage"] = None
            return obj

        def write_event(payload: Any) -> bool:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            event = f"data: {data}\n\n".encode()
            return self._write_chunk(event)

        if not self._open_events():
            return

        if not write_event(chunk({"role": "assistant", "content": ""}, None)):
            return

        limit = fake.disconnect_after_chunks
        if limit is not None and limit <= 0:
            self._drop()
            return

        for k in range(n):
            pause = fake.stream_chunk_pause
            if k > 0 and pause is not None and not self._wait(pause):
                self.close_connection = True
                return
            gate = fake.stream_gate
            if k == n - 1 and gate is not None and not self._wait(gate):
                self.close_connection = True
                return
            if fake.stream_tool_calls:
                call = {"index": 0, "function": {"arguments": f'"k{k}",'}}
                if k == 0:
                    call.update(id="call_fake", type="function", function={"name": "f", "arguments": "["})
                delta: dict[str, Any] = {"tool_calls": [call]}
            else:
                delta = {"content": f"tok{k} "}
            if not write_event(chunk(delta, None)):
                return
            fake.chunks_sent += 1
            if limit is not None and fake.chunks_sent >= limit:
                self._drop()
                return

        if not write_event(chunk({}, finish_reason)):
            return
        if include_usage:
            usage_chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            if not write_event(usage_chunk):
                return
        if not write_event("[DONE]"):
            return
        self._write_raw(b"0\r\n\r\n")

    def _open_events(self) -> bool:
        """Start a 200 event stream in chunked encoding; False if the client is already gone."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        except OSError:
            self.server.fake.client_closed.set()
            self.close_connection = True
            return False
        return True

    def _write_chunk(self, data: bytes) -> bool:
        return self._write_raw(b"%x\r\n%s\r\n" % (len(data), data))

    def _write_raw(self, data: bytes) -> bool:
        fake = self.server.fake
        if self._peer_closed():
            fake.client_closed.set()
            self.close_connection = True
            return False
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            fake.client_closed.set()
            self.close_connection = True
            return False

    def _drop(self) -> None:
        """Close the connection in the middle of a chunked body."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _messages(self, body: dict) -> None:
        """Anthropic's Messages API, as api.anthropic.com answers it."""
        fake = self.server.fake
        if not self.headers.get("x-api-key") or not self.headers.get("anthropic-version"):
            self._send_json(401, _anthropic_error(401, "x-api-key and anthropic-version are required"))
            return
        limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            self._send_json(400, _anthropic_error(400, "max_tokens: Field required"))
            return
        n = min(limit, int(fake.completion_tokens))
        stop_reason = "max_tokens" if limit < fake.completion_tokens else "end_turn"
        tool = fake.tool_use and body.get("tools") and body["tools"][0].get("name")
        if tool:
            stop_reason = "tool_use"
        usage = {
            "input_tokens": count_anthropic_tokens(body),
            "cache_creation_input_tokens": fake.cache_write_tokens,
            "cache_read_input_tokens": fake.cache_read_tokens,
            "output_tokens": n,
        }
        if fake.cache_write_1h_tokens:  # Anthropic splits its writes by how long they are kept
            hour = fake.cache_write_1h_tokens
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": fake.cache_write_tokens - hour,
                "ephemeral_1h_input_tokens": hour,
            }
        message_id = "msg_" + fake._next_id()
        if body.get("stream") is True:
            self._message_events(message_id, body.get("model"), n, stop_reason, usage, tool)
            return
        gate = fake.latency_gate
        if gate is not None and not self._wait(gate):
            self.close_connection = True
            return
        content: list[dict] = [{"type": "text", "text": " ".join(f"tok{i}" for i in range(n))}]
        if tool:
            content.append({"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {"city": "Paris"}})
        self._send_json(
            200,
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            },
        )

    def _message_events(
        self, message_id: str, model: Any, n: int, stop_reason: str, usage: dict, tool: Any
    ) -> None:
        fake = self.server.fake
        fake.chunks_sent = 0

        def event(name: str, data: dict) -> bool:
            return self._write_chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        if not self._open_events():
            return
        start = dict(usage, output_tokens=1)
        message = {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": []}
        message.update(stop_reason=None, stop_sequence=None, usage=start)
        if not event("message_start", {"type": "message_start", "message": message}):
            return
        block = {"type": "text", "text": ""}
        if not event(
            "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
        ):
            return
        event("ping", {"type": "ping"})
        limit = fake.disconnect_after_chunks
        for k in range(n):
            pause, gate = fake.stream_chunk_pause, fake.stream_gate
            if (k > 0 and pause is not None and not self._wait(pause)) or (
                k == n - 1 and gate is not None and not self._wait(gate)
            ):
                self.close_connection = True
                return
            delta = {"type": "text_delta", "text": f"tok{k} "}
            if not event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}):
                return
            fake.chunks_sent += 1
            if limit is not None and fake.chunks_sent >= limit:
                self._drop()
                return
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if tool:
            block = {"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {}}
            event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block})
            for part in ('{"city": ', '"Paris"}'):
                delta = {"type": "input_json_delta", "partial_json": part}
                event("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": delta})
            event("content_block_stop", {"type": "content_block_stop", "index": 1})
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        event("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": n}})
        if event("message_stop", {"type": "message_stop"}):
            self._write_raw(b"0\r\n\r\n")

    def _responses(self, body: dict) -> None:
        """OpenAI's Responses API: `tok0 tok1 ...`, usage by words (3 an input item)."""
        fake = self.server.fake
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        prompt = _words(body.get("instructions")) + sum(3 + _content_words(i.get("content")) for i in items)
        limit = body.get("max_output_tokens")
        n = min(limit, fake.completion_tokens) if isinstance(limit, int) else fake.completion_tokens
        status = "incomplete" if isinstance(limit, int) and limit < fake.completion_tokens else "completed"
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": n,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + n,
        }
        response_id = "resp_" + fake._next_id()
        text = " ".join(f"tok{i}" for i in range(n))
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {
            "type": "message",
            "id": "msg_fake",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        response = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": body.get("model"),
            "output": [item],
            "usage": usage,
            # as OpenAI does: the request's tools and metadata, repeated in the response
            "tools": body.get("tools") or [],
            "metadata": body.get("metadata") or {},
        }
        if body.get("stream") is not True:
            self._send_json(200, response)
            return
        if not self._open_events():
            return
        events = [
            ("response.created", {"response": dict(response, status="in_progress", output=[], usage=None)})
        ]
        events.append(("response.output_item.added", {"output_index": 0, "item": dict(item, content=[])}))
        for k in range(n):
            events.append(("response.output_text.delta", {"item_id": "msg_fake", "delta": f"tok{k} "}))
        events.append(("response.output_item.done", {"output_index": 0, "item": item}))
        events.append((f"response.{status}", {"response": response}))
        for number, (kind, data) in enumerate(events):
            payload = json.dumps({"type": kind, "sequence_number": number, **data})
            if not self._write_chunk(f"event: {kind}\ndata: {payload}\n\n".encode()):
                return
        self._write_raw(b"0\r\n\r\n")

    def _embeddings(self, body: dict, deployment: str | None) -> None:
        model = body.get("model") or deployment or "fake-model"
        raw = body.get("input")
        if isinstance(raw, str):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [raw]  # one input given as token ids
        elif isinstance(raw, list):
            inputs = raw
        else:
            self._send_json(400, _error_body("'input' is required", "invalid_request_error"))
            return
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                tokens += _words(item)
                text = item
            elif isinstance(item, list):
                tokens += len(item)
                text = json.dumps(item)
            else:
                text = json.dumps(item)
            data.append({"object": "embedding", "index": i, "embedding": _fake_vector(text)})
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


class FakeUpstream:
    """A fake OpenAI-compatible server on 127.0.0.1, run in a background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[dict] = []
        self.client_closed = threading.Event()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._id_counter = 0
        self._set_defaults()

    def _set_defaults(self) -> None:
        self.fail_status: int | None = None
        self.fail_times: int | None = None
        self.fail_headers: dict | None = None  # extra headers on failure responses
        self.completion_tokens: int = 10
        self.latency_gate: threading.Event | None = None
        self.stream_gate: threading.Event | None = None
        self.stream_chunk_pause: threading.Event | None = None
        self.disconnect_after_chunks: int | None = None
        self.chunks_sent: int = 0
        # Which completion-limit fields the server honours, first present wins (older Azure API
        # versions, llama.cpp and vLLM honour only max_tokens).
        self.limit_fields: tuple[str, ...] = ("max_tokens", "max_completion_tokens")
        self.count_whole_body = False  # prompt_tokens by count_body_tokens, not by words
        self.stream_tool_calls = False  # stream tool-call argument deltas instead of content
        self.raw_reply: bytes | None = None  # a chat completion's whole 200 body, as given
        self.raw_content_type = "application/json"  # and its Content-Type
        # Anthropic's API: the cache counts its replies report, and a tool call when tools are given
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.cache_write_1h_tokens = 0  # of the writes, those kept an hour
        self.tool_use = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeUpstream:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-upstream-{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:  # wake handlers blocked on idle keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeUpstream is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """Server root without /v1 (for Azure-style base URLs)."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget recorded requests and restore the default behaviour."""
        with self._lock:
            self.requests.clear()
        self._set_defaults()
        self.client_closed.clear()

    # -- helpers used by the handler ---------------------------------------

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _next_id(self) -> str:
        with self._lock:
            self._id_counter += 1
            return f"chatcmpl-fake-{self._id_counter}"

    def _take_failure(self) -> int | None:
        """Status to fail this POST with, or None; uses up one of ``fail_times``."""
        with self._lock:
            status = self.fail_status
            if status is None:
                return None
            if self.fail_times is not None:
                if self.fail_times <= 0:
                    return None
                self.fail_times -= 1
            return int(status)
