"""A fast fake OpenAI-compatible upstream for the benchmark: gevent StreamServer, hand-rolled HTTP/1.1.

Run as its own process: ``python -m bench.upstream --port N``; it prints ``listening <port>`` once it
accepts connections and serves until SIGTERM.

- ``POST [/pace/<ms>]/v1/chat/completions``: a completion of ``max_tokens`` (or
  ``max_completion_tokens``, default 16) one-word tokens with a realistic ``usage`` block. With
  ``"stream": true`` it answers Server-Sent Events in chunked transfer encoding, one HTTP chunk per
  event: one ``chat.completion.chunk`` per token (the first one also carries the role), a final
  chunk with ``finish_reason``, the usage chunk (``"choices": []``) only if
  ``stream_options.include_usage`` is true (and then ``"usage": null`` on every other chunk, as
  OpenAI does), and ``data: [DONE]``. Under ``/pace/<ms>`` the first token leaves at once and every
  later event ``<ms>`` after the previous one (against an absolute schedule, so no drift).
- ``POST /v1/messages``: Anthropic's Messages API, non-streaming: a message of ``max_tokens``
  one-word tokens with Anthropic's ``usage`` block.
- ``GET /health``: 200, for the readiness probe.

It parses only what it needs and keeps connections alive, so it costs a few tens of microseconds of
CPU per call and is never the bottleneck of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import gevent
from gevent import socket
from gevent.server import StreamServer

TEXT = "the quick brown fox jumps over a lazy dog and keeps on running"
WORDS = [json.dumps(" " + w) for w in TEXT.split(" ")]
FIRST_WORD = json.dumps("Hello")
MAX_HEAD = 65536
_ids = iter(range(1, 1 << 62))

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n" + (
    b'{"error":"not found"}'
)
HEALTH = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n" + b'{"status":"ok"}'
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nx-request-id: %s\r\n\r\n"
)


def _prompt_tokens(body: dict) -> int:
    total = 3
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        total += 4 + (len(content.split()) if isinstance(content, str) else 0)
    return total


def _completion_tokens(body: dict) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return 16


def _usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _text(n: int) -> str:
    return "Hello" + "".join(json.loads(WORDS[i % len(WORDS)]) for i in range(1, n))


def _json_reply(payload: dict, request_id: str) -> bytes:
    data = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: %s\r\ncontent-length: %d\r\n\r\n"
        % (request_id.encode(), len(data))
    )
    return head + data


def _completion(body: dict, request_id: str) -> bytes:
    n = _completion_tokens(body)
    text = _text(n)
    payload = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "bench-upstream")),
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": _usage(_prompt_tokens(body), n),
    }
    return _json_reply(payload, request_id)


def _message(body: dict, message_id: str) -> bytes:
    n = _completion_tokens(body)
    payload = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "bench-upstream")),
        "content": [{"type": "text", "text": _text(n)}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": _prompt_tokens(body),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": n,
        },
    }
    return _json_reply(payload, message_id)


def _frame(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


def _stream(sock: socket.socket, body: dict, request_id: str, pace_s: float) -> None:
    n = _completion_tokens(body)
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    model = json.dumps(str(body.get("model", "bench-upstream")))
    prefix = (
        f'{{"id":"{request_id}","object":"chat.completion.chunk","created":{int(time.time())},'
        f'"model":{model},"system_fingerprint":"fp_bench",'
    ).encode()
    tail = b',"usage":null}\n\n' if with_usage else b"}\n\n"
    events = [
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":%s},"logprobs":null,'
        b'"finish_reason":null}]' % FIRST_WORD.encode()
    ]
    events += [
        b'"choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]'
        % WORDS[i % len(WORDS)].encode()
        for i in range(1, n)
    ]
    events.append(b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]')
    sock.sendall(STREAM_HEAD % request_id.encode())
    start = time.monotonic()
    for i, event in enumerate(events):
        if pace_s and i:
            delay = start + i * pace_s - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
        sock.sendall(_frame(b"data: " + prefix + event + tail))
    closing = []
    if with_usage:
        usage = json.dumps(_usage(_prompt_tokens(body), n), separators=(",", ":")).encode()
        closing.append(_frame(b"data: " + prefix + b'"choices":[],"usage":' + usage + b"}\n\n"))
    closing.append(_frame(b"data: [DONE]\n\n"))
    closing.append(b"0\r\n\r\n")
    sock.sendall(b"".join(closing))


def _pace_of(path: bytes) -> tuple[float, bytes] | None:
    """``/pace/<ms>/v1/...`` -> (seconds between events, ``/v1/...``); plain paths have no pace."""
    if not path.startswith(b"/pace/"):
        return 0.0, path
    parts = path.split(b"/", 3)
    if len(parts) < 4 or not parts[2].isdigit():
        return None
    return int(parts[2]) / 1000.0, b"/" + parts[3]


def _answer(sock: socket.socket, method: bytes, path: bytes, raw: bytes) -> None:
    paced = _pace_of(path)
    if paced is None:
        sock.sendall(NOT_FOUND)
        return
    pace_s, path = paced
    if method == b"GET" and path == b"/health":
        sock.sendall(HEALTH)
        return
    if method == b"POST" and path == b"/v1/messages" and not pace_s:
        sock.sendall(_message(json.loads(raw), f"msg_bench_{next(_ids)}"))
        return
    if method != b"POST" or path != b"/v1/chat/completions":
        sock.sendall(NOT_FOUND)
        return
    body = json.loads(raw)
    request_id = f"chatcmpl-bench-{next(_ids)}"
    if body.get("stream") is True:
        _stream(sock, body, request_id, pace_s)
    else:
        sock.sendall(_completion(body, request_id))


def _content_length(head: bytes) -> tuple[int, bool]:
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return length, close


def handle(sock: socket.socket, _address) -> None:
    """One keep-alive connection: read a request, answer it, repeat until the peer closes."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                data = sock.recv(65536)
                if not data or len(buf) > MAX_HEAD:
                    return
                buf += data
                end = buf.find(b"\r\n\r\n")
            head, buf = buf[:end], buf[end + 4 :]
            length, close = _content_length(head)
            while len(buf) < length:
                data = sock.recv(max(65536, length - len(buf)))
                if not data:
                    return
                buf += data
            raw, buf = buf[:length], buf[length:]
            method, path, _ = head.split(b" ", 2)
            _answer(sock, method, path, raw)
            if close:
                return
    except (OSError, ValueError):
        return
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = StreamServer((args.host, args.port), handle, backlog=4096)
    server.init_socket()
    server.start()
    gevent.signal_handler(signal.SIGTERM, server.stop)
    print(f"listening {server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
