"""Building test data through the same domain operations the app uses."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import func, select

from app.catalog.operations import upsert_model
from app.extensions import db
from app.keys.operations import create_key
from app.models import Customer, LedgerEntry, UsageRecord
from app.models.project import Project
from app.projects.operations import create_project
from app.tiers.operations import create_tier
from tests.fakes.upstream import FakeUpstream


class World:
    """One project with a key and models, plus the handles tests need."""

    def __init__(self, app: Flask, upstream: FakeUpstream, live_url: str):
        self.app = app
        self.upstream = upstream
        self.url = live_url
        self.project: Project | None = None
        self.key = ""

    @property
    def secret_key(self) -> str:
        return self.app.config["SECRET_KEY"]

    def setup_default(self, initial_tokens: int = 100_000) -> None:
        self.project = create_project(
            db.session, "default", "Test", new_customer_initial_tokens=initial_tokens
        )
        self.add_model(
            "gpt-test",
            [
                {
                    "provider": "openai",
                    "base_url": self.upstream.base_url,
                    "model": "fake-model",
                    "region": "us",
                    "api_key": "sk-upstream",
                }
            ],
            price={"input_per_mtok": "0.15", "output_per_mtok": "0.60"},
        )
        _, self.key = create_key(db.session, self.project, "tests", "proxy")
        self.commit()

    def add_model(
        self,
        name: str,
        deployments: list[dict[str, Any]],
        model_tier: str = "standard",
        price: dict | None = None,
    ) -> None:
        spec = {"name": name, "model_tier": model_tier, "deployments": deployments}
        if price:
            spec["price"] = price
        upsert_model(db.session, self.project, spec, self.secret_key)
        self.commit()

    def add_tier(self, spec: dict[str, Any]):
        tier = create_tier(db.session, self.project, spec)
        self.commit()
        return tier

    def set(self, **settings: Any) -> None:
        for name, value in settings.items():
            setattr(self.project, name, value)
        from app import stamp

        stamp.bump(db.session)
        self.commit()

    def commit(self) -> None:
        db.session.commit()
        self.app.extensions["tollgate.gateway"].cache.invalidate()

    # --- reading state back -------------------------------------------------------------
    def customer(self, customer_id: str) -> Customer | None:
        db.session.expire_all()
        return db.session.scalar(select(Customer).where(Customer.external_id == customer_id))

    def count(self, model) -> int:
        return db.session.scalar(select(func.count()).select_from(model)) or 0

    def usage_records(self, customer_id: str | None = None) -> list[UsageRecord]:
        db.session.expire_all()
        stmt = select(UsageRecord).order_by(UsageRecord.id)
        if customer_id is not None:
            stmt = stmt.join(Customer, Customer.id == UsageRecord.customer_id).where(
                Customer.external_id == customer_id
            )
        return list(db.session.scalars(stmt))

    def ledger(self, customer_id: str) -> list[LedgerEntry]:
        return list(
            db.session.scalars(
                select(LedgerEntry)
                .join(Customer, Customer.id == LedgerEntry.customer_id)
                .where(Customer.external_id == customer_id)
                .order_by(LedgerEntry.id)
            )
        )

    def give_customer(self, customer_id: str, tokens: int, **fields: Any) -> Customer:
        """Create a customer through the proxy's own account opening, then set its balance via the ledger."""
        from app.db import now_utc, write_transaction
        from app.metering.accounts import Defaults, open_account

        p = self.project
        defaults = Defaults(
            p.id, tokens, p.default_tier_id, p.default_shedding_tier, tuple(p.default_allowed_regions or ())
        )
        with write_transaction(db.engine) as conn:
            open_account(conn, defaults, customer_id, None, now_utc(), source="tests")
        customer = self.customer(customer_id)
        for name, value in fields.items():
            setattr(customer, name, value)
        self.commit()
        return customer


def assign(world: World, customer_id: str, tier, now=None) -> None:
    """Put an existing customer on a tier version, as the admin and API do."""
    from app.customers.operations import assign_tier
    from app.db import now_utc

    assign_tier(db.session, world.customer(customer_id), tier, "tests", now or now_utc())
    world.commit()


def chat(base_url: str, key: str, user: str, model: str = "gpt-test", timeout: float = 30, **extra):
    """One chat completion over HTTP, as an app would send it."""
    import requests

    body = {
        "model": model,
        "user": user,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hello there"}],
        **extra,
    }
    return requests.post(
        f"{base_url}/v1/chat/completions",
        timeout=timeout,
        headers={"Authorization": f"Bearer {key}"},
        json=body,
    )


def raw_stream(base_url: str, key: str, body: dict, path: str = "/v1/chat/completions"):
    """Open a streamed call on a bare socket, so a test can hang up the way a client does."""
    import json
    import socket

    payload = json.dumps(body).encode()
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


class Turnstile:
    """Lets the fake upstream send one more chunk per release(); duck-types threading.Event.wait."""

    def __init__(self) -> None:
        import threading

        self._sem = threading.Semaphore(0)

    def release(self) -> None:
        self._sem.release()

    def wait(self, timeout: float | None = None) -> bool:
        return self._sem.acquire(timeout=timeout)


def hang_up_after(
    world: World, body: dict, marker: bytes, relayed: int, path: str = "/v1/chat/completions"
) -> UsageRecord:
    """Stream `body` on a bare socket, hang up once `relayed` events carrying `marker` arrived (the
    fake upstream sends a chunk per turn), and return the call's usage record once it is settled."""
    turnstile = Turnstile()
    world.upstream.stream_chunk_pause = turnstile
    sock = raw_stream(world.url, world.key, body, path)
    seen = b""
    while seen.count(marker) < relayed:
        data = sock.recv(65536)
        assert data, "the gateway closed the stream early"
        seen += data
        if seen.count(marker) < relayed:
            turnstile.release()
    sock.close()  # hang up mid-stream, as a closing browser tab would
    # Feed the gateway a few more chunks so that one of its writes finds the client gone.
    for _ in range(20):
        turnstile.release()
        if world.upstream.client_closed.wait(0.5):
            break
    assert world.upstream.client_closed.is_set(), "the gateway kept the upstream stream open"
    customer = body.get("user") or body["metadata"]["user_id"]
    records = world.usage_records(customer)
    for _ in range(100):  # settlement runs as the gateway unwinds the stream
        if records:
            break
        world.upstream.client_closed.wait(0.05)
        records = world.usage_records(customer)
    [record] = records
    return record


def hang_up_charges(deltas: list[str], received: int) -> set[int]:
    """What a hang-up may be charged for output (SPEC 5.2: a token per four bytes of each delta's
    JSON-escaped text, at least one a delta) when the client received `received` of `deltas`: TCP
    tells the gateway of the hang-up only a write or two later, so up to five more were relayed."""
    import json

    def cost(count: int) -> int:
        return sum(max(1, -(-(len(json.dumps(d)) - 2) // 4)) for d in deltas[:count])

    return {cost(m) for m in range(received, received + 6)}
