"""A webhook receiver on loopback: records what it is sent, answers what a test asks per path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    """`answers[path]`: statuses to give in turn (the last one repeats); `hang[path]`: hold the
    request until `release` is set."""

    answers: dict[str, list[int]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, path: str) -> list[Received]:
        with self.arrived:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float) -> list[Received]:
        """The requests to `path` once there are `count` of them (or what came before the timeout)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len([r for r in self.received if r.path == path]) >= count, timeout)
            return [r for r in self.received if r.path == path]

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                with receiver.arrived:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    seen = len([r for r in receiver.received if r.path == self.path])
                    receiver.arrived.notify_all()
                if self.path in receiver.hang:
                    receiver.release.wait(30)
                statuses = receiver.answers.get(self.path, [200])
                status = statuses[min(seen, len(statuses)) - 1]
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        return Handler


def serve() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), receiver._handler())
    receiver.server.daemon_threads = True
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()
