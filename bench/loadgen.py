"""The load generator: gevent, raw keep-alive sockets, a minimal HTTP/1.1 response reader.

Run as its own process by the orchestrator: ``python -m bench.loadgen '<json spec>'``. It builds its
requests, prints ``ready``, waits for a line on stdin (so the orchestrator can read the CPU counters
of the gateway right before the load starts), runs, and prints one JSON line of results.

Modes:
- ``closed``: ``concurrency`` workers, each with its own connection, send back to back until
  ``duration`` seconds have passed or ``count`` calls were issued. Latency is counted from the send.
- ``open``: ``count`` calls scheduled at fixed intervals of ``1/rate`` seconds, each on an idle
  connection (or a new one), whether or not earlier calls have come back. Latency and time to first
  chunk are counted from the *scheduled* time, so a stalled server cannot hide its queue
  (coordinated omission).

Spec keys: host, port, path, auth (header value or null), model, customers, customer_offset,
max_tokens, stream, prompt, mode, concurrency, duration, count, rate, timeout, timeline (true: also
return every call's start and latency, for debugging).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import gevent
from gevent import socket
from gevent.pool import Group

perf = time.perf_counter
RECV = 262144


class Failure(Exception):
    """A call that did not succeed; the message is its kind in the report."""


@dataclass
class Outcome:
    status: int
    close: bool
    end: float
    first: float | None = None
    body: bytes = b""


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    __slots__ = ("buf", "sock")

    def __init__(self, address: tuple[str, int], timeout: float):
        try:
            self.sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise Failure(f"connect: {type(exc).__name__}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        try:
            data = self.sock.recv(RECV)
        except TimeoutError as exc:
            raise Failure("timeout") from exc
        except OSError as exc:
            raise Failure(f"recv: {type(exc).__name__}") from exc
        if not data:
            raise Failure("closed by server")
        self.buf += data

    def _head(self) -> tuple[int, bool, int, bool]:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            self._fill()
            end = buf.find(b"\r\n\r\n")
        head = bytes(buf[:end]).lower()
        del buf[: end + 4]
        status = int(head[9:12])
        chunked = b"\r\ntransfer-encoding: chunked" in head
        close = b"\r\nconnection: close" in head
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else None])
        return status, chunked, length, close

    def call(self, request: bytes) -> Outcome:
        try:
            self.sock.sendall(request)
        except OSError as exc:
            raise Failure(f"send: {type(exc).__name__}") from exc
        status, chunked, length, close = self._head()
        if chunked:
            return self._chunked(status, close)
        buf = self.buf
        while len(buf) < length:
            self._fill()
        body = bytes(buf[:length])
        del buf[:length]
        return Outcome(status, close, perf(), body=body)

    def _chunked(self, status: int, close: bool) -> Outcome:
        """Read a chunked body, noting when the first content event arrived."""
        buf = self.buf
        body = bytearray()
        first = None
        while True:
            eol = buf.find(b"\r\n")
            while eol < 0:
                self._fill()
                eol = buf.find(b"\r\n")
            size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
            need = eol + 2 + size + 2
            while len(buf) < need:
                self._fill()
            if size == 0:
                del buf[:need]
                return Outcome(status, close, perf(), first, bytes(body))
            scan_from = max(0, len(body) - 16)
            body += buf[eol + 2 : eol + 2 + size]
            del buf[:need]
            if first is None and body.find(b'"content"', scan_from) >= 0:
                first = perf()


@dataclass
class Tally:
    expect_chunks: int | None
    api: str = "chat"
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (start, latency), if asked for
    keep_timeline: bool = False
    ttfc: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    usage_leaks: int = 0
    issued: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    last_end: float = 0.0

    def check(self, out: Outcome) -> None:
        if out.status != 200:
            raise Failure(f"HTTP {out.status}")
        if self.expect_chunks is None:
            if b'"choices"' not in out.body and not (self.api == "messages" and b'"content"' in out.body):
                raise Failure("no choices in body")
            return
        chunks = out.body.count(b'"content"')
        if chunks != self.expect_chunks:
            raise Failure(f"stream of {chunks}/{self.expect_chunks} content chunks")
        if not out.body.endswith(b"data: [DONE]\n\n"):
            raise Failure("stream without [DONE]")
        if b'"choices":[]' in out.body:
            self.usage_leaks += 1

    def record(self, start: float, out: Outcome) -> None:
        self.latencies.append(out.end - start)
        if self.keep_timeline:
            self.timeline.append((start, out.end - start))
        if out.first is not None:
            self.ttfc.append(out.first - start)
        self.last_end = max(self.last_end, out.end)


class Load:
    def __init__(self, spec: dict):
        self.spec = spec
        self.address = (spec["host"], int(spec["port"]))
        self.timeout = float(spec.get("timeout", 60))
        self.requests = _requests(spec)
        self.offset = int(spec.get("customer_offset", 0))
        expect = int(spec.get("max_tokens", 16)) if spec.get("stream") else None
        self.tally = Tally(expect, keep_timeline=bool(spec.get("timeline")), api=spec.get("api", "chat"))
        self.idle: list[Conn] = []

    def _next_request(self) -> bytes:
        i = self.tally.issued
        self.tally.issued += 1
        return self.requests[(self.offset + i) % len(self.requests)]

    def _one(self, conn: Conn | None, start: float) -> tuple[Conn | None, bool]:
        """One call on conn (a new connection if None): (the connection if reusable, whether it failed)."""
        tally = self.tally
        request = self._next_request()
        tally.inflight += 1
        tally.peak_inflight = max(tally.peak_inflight, tally.inflight)
        try:
            if conn is None:
                conn = Conn(self.address, self.timeout)
            out = conn.call(request)
            tally.check(out)
        except Failure as failure:
            tally.failures[str(failure)] += 1
            if conn is not None:
                conn.close()
            return None, True
        finally:
            tally.inflight -= 1
        tally.record(start, out)
        if out.close:
            conn.close()
            return None, False
        return conn, False

    def closed(self) -> float:
        spec = self.spec
        count = int(spec.get("count") or 0) or math.inf
        t0 = perf()
        deadline = t0 + float(spec.get("duration") or 1e9)

        def worker() -> None:
            conn = None
            while self.tally.issued < count and perf() < deadline:
                conn, failed = self._one(conn, perf())
                if failed:
                    gevent.sleep(0.005)  # do not spin on a server that refuses connections
            if conn is not None:
                conn.close()

        workers = [gevent.spawn(worker) for _ in range(int(spec["concurrency"]))]
        self._join(workers, deadline - t0 + self.timeout + 5)
        return t0

    def open(self) -> float:
        spec = self.spec
        interval = 1.0 / float(spec["rate"])
        group = Group()

        def fire(scheduled: float) -> None:
            self.tally.lags.append(perf() - scheduled)
            conn, _ = self._one(self.idle.pop() if self.idle else None, scheduled)
            if conn is not None:
                self.idle.append(conn)

        t0 = perf() + 0.05
        for i in range(int(spec["count"])):
            scheduled = t0 + i * interval
            delay = scheduled - perf()
            if delay > 0:
                gevent.sleep(delay)
            group.spawn(fire, scheduled)
        self._join(list(group), self.timeout + 5)
        for conn in self.idle:
            conn.close()
        return t0

    def _join(self, greenlets: list, timeout: float) -> None:
        gevent.joinall(greenlets, timeout=timeout)
        unfinished = [g for g in greenlets if not g.dead]
        if unfinished:
            self.tally.failures["unfinished at the deadline"] += len(unfinished)
            gevent.killall(unfinished, block=False)


def _requests(spec: dict) -> list[bytes]:
    """One ready-to-send request per customer, so the hot loop only picks one."""
    extra = ',"stream":true' if spec.get("stream") else ""
    prompt = json.dumps(spec.get("prompt") or "Say hello.")
    auth = f"Authorization: {spec['auth']}\r\n" if spec.get("auth") else ""
    out = []
    # Anthropic's Messages API names the customer in metadata.user_id; chat completions in user.
    who = '"metadata":{{"user_id":"cust-{}"}}' if spec.get("api") == "messages" else '"user":"cust-{}"'
    for i in range(int(spec.get("customers") or 1)):
        body = (
            f'{{"model":"{spec["model"]}",{who.format(i)},"messages":[{{"role":"user","content":{prompt}}}],'
            f'"max_tokens":{int(spec.get("max_tokens", 16))}{extra}}}'
        ).encode()
        head = (
            f"POST {spec['path']} HTTP/1.1\r\nHost: {spec['host']}:{spec['port']}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


def summary(values: list[float]) -> dict | None:
    """Percentiles in milliseconds (nearest rank)."""
    if not values:
        return None
    s = sorted(values)
    n = len(s)

    def pct(q: float) -> float:
        return s[min(n - 1, max(0, math.ceil(q * n) - 1))] * 1000

    return {
        "n": n,
        "mean": sum(s) / n * 1000,
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": s[-1] * 1000,
    }


def run(spec: dict) -> dict:
    load = Load(spec)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    cpu0 = os.times()
    t0 = load.open() if spec["mode"] == "open" else load.closed()
    cpu1 = os.times()
    tally = load.tally
    ok = len(tally.latencies)
    elapsed = max(tally.last_end - t0, 1e-9)
    return {
        "calls": ok + sum(tally.failures.values()),
        "ok": ok,
        "failures": dict(tally.failures),
        "elapsed_s": elapsed,
        "throughput": ok / elapsed,
        "latency": summary(tally.latencies),
        "ttfc": summary(tally.ttfc),
        "sched_lag": summary(tally.lags),
        "peak_inflight": tally.peak_inflight,
        "usage_leaks": tally.usage_leaks,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "timeline": [(round(start - t0, 6), round(latency, 6)) for start, latency in tally.timeline],
    }


def main() -> int:
    spec = json.loads(sys.argv[1])
    result = run(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
