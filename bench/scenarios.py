"""What the benchmark runs: its settings (flags and BENCH_* environment variables) and the scenarios."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PROMPT = (
    "You are a helpful assistant for an online shop. A customer asks whether the blue rain jacket "
    "in size medium can be delivered before Friday, and what the return policy is if it does not fit. "
    "Answer briefly and politely."
)


@dataclass(frozen=True)
class Settings:
    duration: float  # closed-loop scenarios (a), (c): seconds
    concurrency: int  # closed-loop scenarios (a), (c): connections
    rate: float  # (b): calls per second
    rate_calls: int  # (b): calls in all
    chunks: int  # (c), (c2), (d): content chunks per stream
    stream_rate: float  # (c2): streams per second
    stream_calls: int  # (c2): streams in all
    long_streams: int  # (d): concurrent streams
    long_seconds: float  # (d): seconds per stream
    long_rounds: int  # (d): streams per slot, back to back (so `long_streams` are in flight for a while)
    customers: int
    databases: tuple[str, ...]
    pg_dsn: str
    pg_database: str
    profile: float  # seconds of py-spy on the worker after the measured runs; 0 = no profile
    webhooks: bool = False  # 3 subscriptions on customer.created and WEBHOOK_URL set (issue 11)
    redis_url: str | None = None  # TOLLGATE_REDIS_URL: the shared health view and rate windows (issue 13)
    workers: int = 1  # gunicorn workers

    @property
    def pace_ms(self) -> int:
        return max(1, round(self.long_seconds * 1000 / self.chunks))


def _env(name: str, default):
    return type(default)(os.environ.get(name, default))


def parse(argv: list[str] | None) -> Settings:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Tollgate benchmark: direct-to-upstream vs through the gateway (see bench/README.md).",
    )
    p.add_argument("--quick", action="store_true", help="short runs to try the harness (~1.5 min)")
    p.add_argument("--duration", type=float, default=_env("BENCH_DURATION", 10.0))
    p.add_argument("--concurrency", type=int, default=_env("BENCH_CONCURRENCY", 32))
    p.add_argument("--rate", type=float, default=_env("BENCH_RATE", 200.0))
    p.add_argument("--rate-calls", type=int, default=_env("BENCH_RATE_CALLS", 2000))
    p.add_argument("--chunks", type=int, default=_env("BENCH_CHUNKS", 50))
    p.add_argument("--stream-rate", type=float, default=_env("BENCH_STREAM_RATE", 50.0))
    p.add_argument("--stream-calls", type=int, default=_env("BENCH_STREAM_CALLS", 500))
    p.add_argument("--long-streams", type=int, default=_env("BENCH_LONG_STREAMS", 1000))
    p.add_argument("--long-seconds", type=float, default=_env("BENCH_LONG_SECONDS", 5.0))
    p.add_argument("--long-rounds", type=int, default=_env("BENCH_LONG_ROUNDS", 2))
    p.add_argument("--customers", type=int, default=_env("BENCH_CUSTOMERS", 1000))
    p.add_argument(
        "--databases",
        default=_env("BENCH_DATABASES", "sqlite,postgres"),
        help="comma-separated: sqlite, postgres",
    )
    p.add_argument("--pg-dsn", default=_env("BENCH_PG_DSN", DEFAULT_PG_DSN), help="admin connection")
    p.add_argument("--pg-database", default=_env("BENCH_PG_DATABASE", "tollgate_bench"))
    p.add_argument(
        "--profile",
        type=float,
        default=_env("BENCH_PROFILE", 0.0),
        help="after the measured runs, profile the worker with py-spy for this many seconds under (a)",
    )
    p.add_argument(
        "--webhooks",
        action="store_true",
        default=bool(_env("BENCH_WEBHOOKS", 0)),
        help="run the gateway with WEBHOOK_URL set and 3 webhook subscriptions on customer.created",
    )
    p.add_argument(
        "--redis",
        default=_env("BENCH_REDIS", ""),
        metavar="URL",
        help="run the gateway with TOLLGATE_REDIS_URL=URL (e.g. redis://127.0.0.1:6379/8, emptied first)",
    )
    p.add_argument(
        "--workers", type=int, default=_env("BENCH_WORKERS", 1), help="gunicorn workers (default 1)"
    )
    a = p.parse_args(argv)
    if a.quick:
        a.duration, a.rate_calls, a.stream_calls = min(a.duration, 3.0), min(a.rate_calls, 600), 150
        a.long_seconds, a.long_rounds = min(a.long_seconds, 2.0), 1
    dbs = tuple(d.strip().lower() for d in a.databases.split(",") if d.strip())
    unknown = set(dbs) - {"sqlite", "postgres"}
    if unknown:
        p.error(f"unknown databases: {', '.join(sorted(unknown))}")
    return Settings(
        a.duration,
        a.concurrency,
        a.rate,
        a.rate_calls,
        a.chunks,
        a.stream_rate,
        a.stream_calls,
        a.long_streams,
        a.long_seconds,
        a.long_rounds,
        a.customers,
        dbs,
        a.pg_dsn,
        a.pg_database,
        a.profile,
        a.webhooks,
        a.redis or None,
        max(1, a.workers),
    )


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    mode: str  # "closed" | "open"
    stream: bool = False
    paced: bool = False
    max_tokens: int = 16
    concurrency: int = 0
    duration: float = 0.0
    rate: float = 0.0
    count: int = 0
    timeout: float = 60.0
    api: str = "chat"  # "chat": /v1/chat/completions; "messages": Anthropic's /v1/messages

    def load(self) -> dict:
        """The load generator's part of the spec (the target adds host, port, path, model, auth)."""
        return {
            "api": self.api,
            "mode": self.mode,
            "stream": self.stream,
            "max_tokens": self.max_tokens,
            "concurrency": self.concurrency,
            "duration": self.duration,
            "rate": self.rate,
            "count": self.count,
            "timeout": self.timeout,
            "prompt": PROMPT,
        }

    @property
    def budget_s(self) -> float:
        """How long the run may take before the orchestrator gives up on the load generator."""
        sending = self.duration if self.mode == "closed" else self.count / self.rate
        return sending + self.timeout + 60


def scenarios(s: Settings) -> list[Scenario]:
    return [
        Scenario("a", f"(a) non-streaming, closed loop, concurrency {s.concurrency}, {s.duration:g} s",
                 "closed", concurrency=s.concurrency, duration=s.duration),
        Scenario("b", f"(b) non-streaming, open loop, {s.rate:g} calls/s, {s.rate_calls} calls "
                      "(latency from the scheduled send)", "open", rate=s.rate, count=s.rate_calls),
        Scenario("c", f"(c) streaming {s.chunks} chunks, closed loop, concurrency {s.concurrency}, "
                      f"{s.duration:g} s",
                 "closed", stream=True, max_tokens=s.chunks, concurrency=s.concurrency, duration=s.duration),
        Scenario("c2", f"(c2) streaming {s.chunks} chunks, open loop, {s.stream_rate:g} streams/s, "
                       f"{s.stream_calls} streams (from the scheduled send)",
                 "open", stream=True, max_tokens=s.chunks, rate=s.stream_rate, count=s.stream_calls),
        Scenario("m", f"(m) Anthropic's /v1/messages, non-streaming, closed loop, concurrency "
                      f"{s.concurrency}, {s.duration:g} s",
                 "closed", concurrency=s.concurrency, duration=s.duration, api="messages"),
        Scenario("d", f"(d) {s.long_streams} concurrent streams of {s.long_seconds:g} s ({s.chunks} chunks "
                      f"{s.pace_ms} ms apart), opened at {s.long_streams / s.long_seconds:g}/s, "
                      f"{s.long_streams * s.long_rounds} streams",
                 "open", stream=True, paced=True, max_tokens=s.chunks, rate=s.long_streams / s.long_seconds,
                 count=s.long_streams * s.long_rounds, timeout=s.long_seconds + 60),
    ]  # fmt: skip
