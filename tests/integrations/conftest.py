"""Stripe events as Stripe sends them: snapshot events (shapes of API version 2026-10-28) signed
with the endpoint's secret by Stripe's scheme (HMAC-SHA256 of "{t}.{body}", hex, in
`Stripe-Signature: t=…,v1=…`), POSTed over HTTP to a live gateway."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from app.integrations.operations import configure_stripe
from app.models import Event, LedgerEntry
from app.models.purchase import InboundWebhook
from tests.factories import World

SECRET = "whsec_tollgate_tests_0123456789abcdef"
API_KEY = "sk_test_tollgate_0123456789"
PACK, TOPUP, PLUS = "price_pack1000", "price_topup500", "price_plus_monthly"
_ids = itertools.count(1)


def sign(body: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):06d}{int(time.time() * 1000) % 100000:05d}"


def event(type: str, obj: dict, event_id: str | None = None, **extra) -> dict:
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
        **extra,
    }


def checkout_session(
    session_id: str | None = None,
    *,
    client_reference_id: str | None = None,
    metadata: dict | None = None,
    customer: str | None = None,
    email: str | None = "buyer@example.com",
    name: str | None = "Test Buyer",
    payment_status: str = "paid",
    mode: str = "payment",
    payment_intent: str | None = None,
    amount_total: int = 2000,
    subscription: str | None = None,
) -> dict:
    """A checkout.session as its events carry it (line items are not in webhooks)."""
    return {
        "id": session_id or new_id("cs_test"),
        "object": "checkout.session",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "client_reference_id": client_reference_id,
        "currency": "usd",
        "customer": customer,
        "customer_creation": "if_required",
        "customer_details": {"email": email, "name": name, "phone": None, "tax_exempt": "none"},
        "customer_email": None,
        "livemode": False,
        "metadata": metadata or {},
        "mode": mode,
        "payment_intent": payment_intent or (new_id("pi") if mode == "payment" else None),
        "payment_link": None,
        "payment_status": payment_status,
        "status": "complete",
        "subscription": subscription,
    }


def charge(payment_intent: str, amount: int, amount_refunded: int, charge_id: str | None = None) -> dict:
    return {
        "id": charge_id or new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "currency": "usd",
        "payment_intent": payment_intent,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
    }


def invoice(
    customer: str,
    lines: list[tuple[str, int]],
    *,
    billing_reason: str = "subscription_cycle",
    subscription: str = "sub_test_1",
    metadata: dict | None = None,
    email: str | None = None,
    payment_intent: str | None = None,
) -> dict:
    """An invoice of current API versions: the subscription under parent.subscription_details,
    each line's price under pricing.price_details, the payment intent under payments."""
    return {
        "id": new_id("in"),
        "object": "invoice",
        "amount_paid": 1500,
        "billing_reason": billing_reason,
        "currency": "usd",
        "customer": customer,
        "customer_email": email,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": new_id("il"),
                    "object": "line_item",
                    "quantity": quantity,
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": price, "product": "prod_x"},
                    },
                }
                for price, quantity in lines
            ],
            "has_more": False,
        },
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "metadata": metadata or {}},
        },
        "payments": {
            "object": "list",
            "data": [
                {"payment": {"type": "payment_intent", "payment_intent": payment_intent or new_id("pi")}}
            ],
        },
        "status": "paid",
    }


@dataclass
class Stripe:
    """Sends events to one project's webhook as Stripe does, and reads back what they did."""

    world: World
    url: str

    def post(self, body: str, signature: str | None) -> requests.Response:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return requests.post(self.url, data=body.encode(), headers=headers, timeout=30)

    def send(self, evt: dict, secret: str = SECRET, timestamp: int | None = None) -> requests.Response:
        body = json.dumps(evt, separators=(",", ":"))
        return self.post(body, sign(body, secret, timestamp))

    def deliver(self, evt: dict) -> str:
        """Send, expect Stripe's 2xx, and give the outcome the gateway recorded."""
        answer = self.send(evt)
        assert answer.status_code == 200, answer.text
        return self.received(evt["id"]).outcome

    def received(self, event_id: str) -> InboundWebhook:
        db.session.expire_all()
        row = db.session.scalar(select(InboundWebhook).where(InboundWebhook.event_id == event_id))
        assert row is not None, f"{event_id} was not recorded"
        return row

    def ledger(self, customer_id: str, kind: str | None = None) -> list[LedgerEntry]:
        return [e for e in self.world.ledger(customer_id) if kind is None or e.kind == kind]

    def events(self, type: str) -> list[Event]:
        db.session.expire_all()
        return list(db.session.scalars(select(Event).where(Event.type == type).order_by(Event.id)))

    def balance(self, customer_id: str) -> int:
        customer = self.world.customer(customer_id)
        assert customer is not None, f"no customer {customer_id}"
        return customer.token_balance


@pytest.fixture
def stripe(world: World, stripe_api) -> Iterator[Stripe]:
    """Project `default` (100,000 initial tokens) with a signing secret, an API key for the fake
    Stripe API, tiers `pro` and `plus`, and the price map: PACK → 1,000 tokens and tier pro,
    TOPUP → 500 tokens, PLUS → 20,000 tokens a month and tier plus."""
    world.add_tier({"key": "pro", "name": "Pro", "prepaid": True})
    world.add_tier({"key": "plus", "name": "Plus", "prepaid": True})
    configure_stripe(
        db.session,
        world.project,
        world.secret_key,
        webhook_secret=SECRET,
        api_key=API_KEY,
        prices={
            PACK: {"tokens": 1000, "tier": "pro"},
            TOPUP: {"tokens": 500},
            PLUS: {"tokens": 20000, "tier": "plus"},
        },
    )
    world.commit()
    yield Stripe(world, f"{world.url}/integrations/stripe/{world.project.slug}/webhook")
    # SPEC 11.1 after every Stripe test: every balance is its ledger less its metered usage, and
    # no prepaid hard-capped balance is below 0.
    db.session.rollback()
    result = world.app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "ledger ok" in result.output
