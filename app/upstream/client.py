"""One pooled HTTP/1.1 client per process: connect and read timeouts, streams passed through as raw
bytes (DESIGN "The hot path").

It speaks just what an upstream call needs (a POST with a JSON body; a reply read whole, or a
stream read as it arrives) on the standard `socket` and `ssl` modules, which are gevent's once the
worker has patched the process, and parses replies with httptools (llhttp, in C). A target's
request line and headers are prepared once; a call adds its length and body. Generic clients
spend more CPU on each call than the gateway's own work, most of it parsing headers in Python.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httptools
from gevent.monkey import get_original

from app import json_codec

CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 65536
IDLE_PER_ORIGIN = 512  # connections kept open per upstream origin between calls
ORIGINS = 64  # origins whose connections are kept; the least recently used one's are closed
USER_AGENT = "tollgate"
DEFAULT_PORTS = {"http": 80, "https": 443}


_poll = get_original("select", "poll")  # gevent's patching removes it from `select`
READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class UpstreamFailure(Exception):
    """A failure before the first byte reached the client: the next deployment may be tried."""

    def __init__(self, message: str, *, timeout: bool = False, reached: bool = True):
        super().__init__(message)
        self.timeout = timeout
        self.reached = reached  # False when no connection was ever made


class BrokenReply(OSError):
    """The upstream's reply stopped, or stopped making sense, before its end."""


class Target:
    """Where calls go: the origin, and the request head (request line, Host, headers) as bytes."""

    __slots__ = ("head", "host", "origin", "port", "tls")

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.origin = (parts.scheme, self.host, self.port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c <= " " or c == "\x7f" for c in path):
            raise ValueError(f"the URL's path holds a space or a control character: {url!r}")
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if not any(name.lower() == "user-agent" for name in headers):
            lines.append(f"User-Agent: {USER_AGENT}")  # some upstreams' firewalls refuse calls without one
        lines.append("Accept-Encoding: identity")  # relayed as it comes: nothing to decode
        if any(c in line for line in lines for c in "\r\n\0"):
            raise ValueError("a header holds a line break")
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Parsed:
    """httptools' callbacks for one reply: its status and content type, its body as it arrives,
    its end. Interim replies (100 Continue, 103 Early Hints) before it are skipped; anything the
    upstream sends after it spoils the connection and is not read as part of it."""

    __slots__ = (
        "complete", "connection", "content_type", "framed", "headers_done", "interim", "parser",
        "parts", "spoiled", "status",
    )  # fmt: skip

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.headers_done = self.complete = self.spoiled = False
        self.status = 0
        self._fresh()
        # The parser (its status code): it and these callbacks refer to each other until
        # _Exchange.finish parts them.
        self.parser: Any = httptools.HttpResponseParser(self)

    def _fresh(self) -> None:
        self.content_type = "application/json"
        self.framed = self.interim = False
        self.connection = b""  # the Connection header, lowercased

    def on_message_begin(self) -> None:
        if self.complete:  # a second reply to one request: out of step with us
            self.spoiled = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        lower = name.lower()
        if lower == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lower in (b"content-length", b"transfer-encoding"):
            self.framed = True  # else the body ends when the connection closes
        elif lower == b"connection":
            self.connection = value.lower()

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        self.interim = 100 <= status < 200 and status != 101
        if not self.interim:
            self.status, self.headers_done = status, True

    def on_body(self, body: bytes) -> None:
        if not self.complete and not self.interim:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.interim:
            self._fresh()  # nothing of it is the final reply's
        else:
            self.complete = True


class _Exchange:
    """One request and its reply on one connection."""

    def __init__(self, client: Client, target: Target, sock: socket.socket) -> None:
        self.client, self.target, self.sock = client, target, sock
        self.parsed = _Parsed()
        self.parser = self.parsed.parser

    def read_head(self) -> int:
        """Read up to the final reply's headers (interim 1xx replies are skipped); its status."""
        while not self.parsed.headers_done:
            self.read_more()
        return self.parsed.status

    def read_more(self) -> None:
        """Read what the upstream sent next and parse it; a close before the reply's end breaks it."""
        data = self.sock.recv(READ_SIZE)
        if not data:
            if self.parsed.headers_done and not self.parsed.framed:
                self.parsed.complete = True  # a body that ends with its connection
                return
            raise BrokenReply("the upstream closed the connection before the end of its reply")
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.parsed.complete:  # the reply is whole; what follows it is not ours to read
                self.parsed.spoiled = True
                return
            raise BrokenReply(f"the upstream's reply is not valid HTTP: {exc}") from exc

    def taken(self) -> bytes:
        parts = self.parsed.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        return data

    def finish(self, *, reuse: bool) -> None:
        """Keep the connection for the next call if the reply was read to its end, else close it:
        closing the socket is how the upstream learns the client went away."""
        self.parsed.parser = None
        if reuse and self.reusable():
            self.client.keep(self.target, self.sock)
        else:
            self.sock.close()

    def reusable(self) -> bool:
        """Read to its end, with the connection left open (the parser's own answer is gone once
        the reply is complete)."""
        parsed = self.parsed
        if parsed.spoiled or not (parsed.complete and parsed.framed) or b"close" in parsed.connection:
            return False
        return self.parser.get_http_version() == "1.1" or b"keep-alive" in parsed.connection


class Reply:
    """An upstream answer: status, content type, and either a body or a stream of raw bytes."""

    def __init__(
        self,
        status: int,
        content_type: str,
        body: bytes | None = None,
        chunks: Iterator[bytes] | None = None,
        exchange: _Exchange | None = None,
    ):
        self.status = status
        self.content_type = content_type
        self.body = body
        self._chunks = chunks
        self._exchange = exchange
        self._first = b""

    def prime(self, name: str) -> None:
        """Read the first bytes of a stream now, while failing over is still possible."""
        with _failing(name, " before its first byte", lambda: self.close(finished=False)):
            self._first = next(self.chunks(), b"")
        if not self._first:
            self.close(finished=False)
            raise UpstreamFailure(f"{name} closed the stream before its first byte")

    def chunks(self) -> Iterator[bytes]:
        """Body bytes as they arrive (chunked framing removed), with no buffering. A failure
        raises OSError (a timeout, a reset, a reply cut short)."""
        if self._first:
            first, self._first = self._first, b""
            yield first
        if self._chunks is not None:
            yield from self._chunks
            return
        exchange = self._exchange
        assert exchange is not None
        while True:
            if exchange.parsed.parts:  # what came with the headers, then each read's
                yield exchange.taken()
            if exchange.parsed.complete:
                return
            exchange.read_more()

    def close(self, *, finished: bool) -> None:
        """Return the connection to the pool if the body was read to the end, else drop it."""
        if self._exchange is not None:
            self._exchange.finish(reuse=finished)
            self._exchange = None


class Client:
    def __init__(self, maxsize: int = IDLE_PER_ORIGIN):
        self.maxsize = maxsize
        # Idle connections per origin, most recently used last. A burst beyond them opens more
        # connections rather than queueing; at most `maxsize` stay open afterwards.
        self._idle: dict[tuple[str, str, int], list[socket.socket]] = {}

    def post(
        self, url: str, headers: dict[str, str], body: dict, read_timeout_s: float, stream: bool, name: str
    ) -> Reply:
        """POST a JSON body to a URL (the admin's probe; the proxy prepares its targets once)."""
        try:
            target = Target(url, headers)
        except ValueError as exc:
            raise UpstreamFailure(f"{name}: {exc}", reached=False) from exc
        return self.send(target, body, read_timeout_s, stream, name)

    def send(self, target: Target, body: dict, read_timeout_s: float, stream: bool, name: str) -> Reply:
        """POST a JSON body; a 200 stream is primed (its first bytes read) so that a failure before
        them is still an UpstreamFailure. `name` says whom the failures are about."""
        reply = self._send(target, json_codec.dumps(body), read_timeout_s, stream, name)
        if stream and reply.status == 200:
            reply.prime(name)
        return reply

    def _send(self, target: Target, payload: bytes, read_timeout_s: float, stream: bool, name: str) -> Reply:
        exchange = _Exchange(self, target, self._connection(target, name))
        with _failing(name, "", lambda: exchange.finish(reuse=False)):
            exchange.sock.settimeout(read_timeout_s)
            status = _request(
                exchange, b"%sContent-Length: %d\r\n\r\n%s" % (target.head, len(payload), payload)
            )
            if stream and status == 200:
                return Reply(status, exchange.parsed.content_type, exchange=exchange)
            while not exchange.parsed.complete:
                exchange.read_more()
        body = exchange.taken()
        exchange.finish(reuse=True)
        return Reply(status, exchange.parsed.content_type, body=body)

    def _connection(self, target: Target, name: str) -> socket.socket:
        idle = self._idle.get(target.origin)
        while idle:
            try:
                sock = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if _still_open(sock):
                return sock
            sock.close()
        return _connect(target, name)

    def keep(self, target: Target, sock: socket.socket) -> None:
        idle = self._idle.pop(target.origin, None)  # back in last: the most recently used
        if idle is None:
            idle = []
            while len(self._idle) >= ORIGINS:  # a deployment's old address, a probed one...
                for stale in self._idle.pop(next(iter(self._idle))):
                    stale.close()
        self._idle[target.origin] = idle
        if len(idle) < self.maxsize:
            idle.append(sock)
        else:
            sock.close()


@contextmanager
def _failing(name: str, when: str, drop: Callable[[], None]) -> Iterator[None]:
    """What breaks on the wire (a timeout, a reset, a reply cut short) as an UpstreamFailure, the
    connection dropped first; anything else drops it too and goes on as it is."""
    try:
        yield
    except TimeoutError as exc:
        drop()
        raise UpstreamFailure(f"{name} timed out{when}", timeout=True) from exc
    except OSError as exc:
        drop()
        raise UpstreamFailure(f"{name} failed{when}: {exc}") from exc
    except BaseException:
        drop()
        raise


def _request(exchange: _Exchange, request: bytes) -> int:
    """Send the request and read the reply's head. An upstream may answer before it has read the
    whole body (a 413, a 401) and close: its answer is read and relayed, not taken for a failure."""
    try:
        exchange.sock.sendall(request)
    except TimeoutError:
        raise
    except OSError as unsent:  # a reset, a broken pipe; over TLS an unexpected EOF
        exchange.parsed.spoiled = True
        try:
            return exchange.read_head()
        except OSError:
            raise unsent from None
    return exchange.read_head()


def _connect(target: Target, name: str) -> socket.socket:
    try:
        sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        raise UpstreamFailure(
            f"{name} did not accept a connection in time", timeout=True, reached=False
        ) from exc
    except OSError as exc:
        raise UpstreamFailure(f"cannot connect to {name}", reached=False) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not target.tls:
        return sock
    try:
        return _tls().wrap_socket(sock, server_hostname=target.host)
    except TimeoutError as exc:
        sock.close()
        raise UpstreamFailure(f"{name} did not complete TLS in time", timeout=True, reached=False) from exc
    except OSError as exc:  # ssl.SSLError included: a bad certificate is no connection
        sock.close()
        raise UpstreamFailure(f"cannot connect to {name} over TLS: {exc}", reached=False) from exc


def _still_open(sock: socket.socket) -> bool:
    """An idle connection the upstream has not closed: nothing to read on it yet (a close, or
    bytes out of step with us, make it readable). The process's own poll, not gevent's: a zero
    timeout never waits, it costs one system call, and unlike select it takes any descriptor."""
    try:
        if getattr(sock, "pending", None) and sock.pending():  # type: ignore[attr-defined]
            return False  # TLS bytes already decrypted and waiting: out of step
        poll = _poll()
        poll.register(sock.fileno(), READABLE)
        return not poll.poll(0)
    except (OSError, ValueError):
        return False
