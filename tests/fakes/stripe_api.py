"""A fake of the part of Stripe's API Tollgate calls, served over real HTTP on loopback: a checkout
session retrieved with `expand[]=line_items`, its `/line_items` pages, and `/v1/invoice_payments`
for an invoice.

Tests register sessions with `add_session(id, [(price_id, quantity), ...])` (other ids get
Stripe's 404 error body) and invoices' payment intents with `add_invoice_payment(invoice, pi)`.
`fail_status` makes every call fail with that status; `requests` keeps
what was asked (path, query, Authorization) so a test can check what the gateway sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PAGE = 10  # Stripe's default page size for an expanded list


@dataclass
class FakeStripeApi:
    sessions: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    invoice_payments: dict[str, str] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    fail_status: int | None = None
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_session(self, session_id: str, lines: list[tuple[str, int]]) -> None:
        self.sessions[session_id] = lines

    def add_invoice_payment(self, invoice_id: str, payment_intent: str) -> None:
        self.invoice_payments[invoice_id] = payment_intent

    def reset(self) -> None:
        with self.lock:
            self.sessions.clear()
            self.invoice_payments.clear()
            self.requests.clear()
            self.fail_status = None

    def start(self) -> FakeStripeApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = fake.answer(self.path, dict(self.headers))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        with self.lock:
            self.requests.append(
                {"path": parts.path, "query": query, "authorization": headers.get("Authorization")}
            )
        if self.fail_status is not None:
            return self.fail_status, _error("api_error", "the fake is failing on purpose")
        segments = parts.path.strip("/").split("/")
        if segments == ["v1", "invoice_payments"]:
            return 200, self._invoice_payments(query.get("invoice", [""])[0])
        if segments[:3] != ["v1", "checkout", "sessions"] or len(segments) not in (4, 5):
            return 404, _error("invalid_request_error", f"Unrecognized request URL (GET: {parts.path})")
        session_id = segments[3]
        if session_id not in self.sessions:
            return 404, _error("invalid_request_error", f"No such checkout.session: '{session_id}'")
        items = [_item(session_id, i, price, qty) for i, (price, qty) in enumerate(self.sessions[session_id])]
        if len(segments) == 5 and segments[4] == "line_items":
            return 200, _page(items, session_id, query.get("starting_after", [None])[0], 100)
        session = {"id": session_id, "object": "checkout.session", "mode": "payment"}
        if "line_items" in query.get("expand[0]", []):
            session["line_items"] = _page(items, session_id, None, PAGE)
        return 200, session

    def _invoice_payments(self, invoice_id: str) -> dict:
        found = self.invoice_payments.get(invoice_id)
        data = [_payment(invoice_id, found)] if found else []
        return {"object": "list", "data": data, "has_more": False, "url": "/v1/invoice_payments"}


def _payment(invoice_id: str, payment_intent: str) -> dict:
    return {
        "id": f"inpay_{invoice_id}",
        "object": "invoice_payment",
        "invoice": invoice_id,
        "is_default": True,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "paid",
    }


def _item(session_id: str, index: int, price: str, quantity: int) -> dict:
    return {
        "id": f"li_{session_id}_{index}",
        "object": "item",
        "quantity": quantity,
        "price": {"id": price, "object": "price", "unit_amount": 1000, "currency": "usd"},
        "amount_total": 1000 * quantity,
        "currency": "usd",
        "description": f"pack {price}",
    }


def _page(items: list[dict], session_id: str, after: str | None, size: int) -> dict:
    start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0)
    chunk = items[start : start + size]
    return {
        "object": "list",
        "data": chunk,
        "has_more": start + size < len(items),
        "url": f"/v1/checkout/sessions/{session_id}/line_items",
    }


def _error(kind: str, message: str) -> dict:
    return {"error": {"type": kind, "message": message}}
