"""Calls to Stripe's API, with the project's key, at TOLLGATE_STRIPE_API_BASE when set (a loopback
fake in tests), else Stripe's: a checkout session's line items (SPEC 7.5), and what paid an
invoice when its event does not say."""

from __future__ import annotations

import stripe

from app.integrations.objects import mapping, quantity, stripe_id
from app.integrations.received import FromStripe

TIMEOUT_S = 10  # Stripe gives up on a webhook after ~20 s; leave room to answer


class StripeUnavailable(Exception):
    """Stripe's API did not answer what was asked (down, refused the key, unknown object)."""


def ask(api_key: str, api_base: str | None, what: tuple[str, str]) -> FromStripe:
    kind, object_id = what
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else {},
        max_network_retries=1,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_S),
    )
    try:
        if kind == "line_items":
            return FromStripe(lines=_line_items(client, object_id))
        return FromStripe(payment_intent=_invoice_payment_intent(client, object_id))
    except stripe.APIConnectionError as exc:
        raise StripeUnavailable(f"Stripe's API could not be reached ({type(exc).__name__})") from exc
    except stripe.StripeError as exc:
        said = exc.user_message or type(exc).__name__
        raise StripeUnavailable(f"Stripe's API answered HTTP {exc.http_status}: {said}") from exc


def _line_items(client: stripe.StripeClient, session_id: str) -> list[tuple[str, int]]:
    """(price id, quantity) of every line: `expand=["line_items"]`, then the following pages if
    the session has more lines than one page holds."""
    session = client.v1.checkout.sessions.retrieve(session_id, {"expand": ["line_items"]}).to_dict()
    page = mapping(session.get("line_items"))
    lines = _lines(page)
    while page.get("has_more") and page.get("data"):
        after = page["data"][-1]["id"]
        page = client.v1.checkout.sessions.line_items.list(
            session_id, {"limit": 100, "starting_after": after}
        ).to_dict()
        lines += _lines(page)
    return lines


def _invoice_payment_intent(client: stripe.StripeClient, invoice_id: str) -> str | None:
    """The payment intent of the invoice's payment (current API versions keep it there)."""
    payments = [
        mapping(p)
        for p in client.v1.invoice_payments.list({"invoice": invoice_id, "limit": 10}).to_dict().get("data")
        or []
    ]
    # The payment that paid it first (an invoice may list canceled or open attempts too).
    payments.sort(key=lambda p: (p.get("status") != "paid", not p.get("is_default")))
    for payment in payments:
        found = stripe_id(mapping(payment.get("payment")).get("payment_intent"))
        if found is not None:
            return found
    return None


def _lines(page: dict) -> list[tuple[str, int]]:
    found = []
    for item in page.get("data") or []:
        price = stripe_id(mapping(item).get("price"))
        if price is not None:
            found.append((price, quantity(item.get("quantity"))))
    return found
