"""Calls to Stripe's API: a checkout session's line items (SPEC 7.5), with the project's key, at
TOLLGATE_STRIPE_API_BASE when set (a loopback fake in tests), else Stripe's."""

from __future__ import annotations

import stripe

from app.integrations.objects import mapping, quantity, stripe_id

TIMEOUT_S = 10  # Stripe gives up on a webhook after ~20 s; leave room to answer


class StripeUnavailable(Exception):
    """Stripe's API could not tell what was bought (down, refused the key, unknown session)."""


def line_items(api_key: str, session_id: str, api_base: str | None) -> list[tuple[str, int]]:
    """(price id, quantity) of every line of the session: `expand=["line_items"]`, then the
    following pages if the session has more lines than one page holds."""
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else {},
        max_network_retries=1,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_S),
    )
    try:
        session = client.v1.checkout.sessions.retrieve(session_id, {"expand": ["line_items"]}).to_dict()
        page = session.get("line_items") or {}
        lines = _lines(page)
        while page.get("has_more") and page.get("data"):
            after = page["data"][-1]["id"]
            page = client.v1.checkout.sessions.line_items.list(
                session_id, {"limit": 100, "starting_after": after}
            ).to_dict()
            lines += _lines(page)
    except stripe.StripeError as exc:
        raise StripeUnavailable(
            f"Stripe's API did not give session {session_id}'s line items: {exc}"
        ) from exc
    return lines


def _lines(page: dict) -> list[tuple[str, int]]:
    found = []
    for item in page.get("data") or []:
        price = stripe_id(mapping(item).get("price"))
        if price is not None:
            found.append((price, quantity(item.get("quantity"))))
    return found
