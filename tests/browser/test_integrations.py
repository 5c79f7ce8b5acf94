"""The Integrations page in headless Chromium: add a subscription (its secret shown once), see its
delivery, retry a failed one, the sender being the real one (issue 11, acceptance 6); Stripe's
settings and received events (issue 12, acceptance 6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from app.events.delivery import DELAYS_S, Dispatcher
from app.extensions import db
from app.models.event import Delivery
from tests.events.receiver import Receiver, serve
from tests.events.test_delivery import Clock
from tests.factories import World, chat
from tests.integrations.conftest import API_KEY, PACK, SECRET, Stripe, checkout_session, event

try:
    from playwright.sync_api import expect
except ImportError as missing:  # fail loudly: the browser tests never skip
    raise ImportError(
        "Playwright for Python is not installed: run `.venv/bin/pip install -e '.[dev]'`"
    ) from missing


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


def send_due(sender: Dispatcher, receiver: Receiver, path: str, count: int) -> None:
    sender.tick()
    assert len(receiver.wait_for(path, count, 10)) >= count
    assert sender.idle(10)


def test_add_a_subscription_see_its_delivery_and_retry_a_failed_one(admin, world: World, receiver: Receiver):
    page = admin
    receiver.answers["/crm"] = [200] + [500] * (len(DELAYS_S) + 1) + [200]
    page.get_by_role("link", name="Integrations").click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    page.get_by_label("Target URL").fill(receiver.url + "/crm")
    page.get_by_label("customer.created").check()
    page.get_by_role("button", name="Subscribe").click()
    secret = page.get_by_label("Signing secret of the new subscription").input_value()
    assert secret.startswith("whsec_")
    expect(page.get_by_text("Copy its signing secret now")).to_be_visible()
    page.reload()  # a reload never shows the secret again
    expect(page.get_by_label("Signing secret of the new subscription")).to_have_count(0)

    clock = Clock()
    sender = Dispatcher(db.engine, world.secret_key, holder="tests:1", clock=clock)
    try:
        assert chat(world.url, world.key, "first-lead").status_code == 200
        send_due(sender, receiver, "/crm", 1)
        [got] = receiver.on("/crm")
        assert Webhook(secret).verify(got.body, got.headers)["customer_id"] == "first-lead"
        page.reload()
        page.get_by_role("link", name="1 delivered · 0 pending · 0 failed").click()
        expect(page.locator("tr[data-status=delivered]")).to_have_count(1)
        expect(page.get_by_role("button", name="Retry now")).to_have_count(0)

        assert chat(world.url, world.key, "second-lead").status_code == 200
        for attempt in range(len(DELAYS_S) + 1):  # every retry fails until the delivery is failed
            send_due(sender, receiver, "/crm", attempt + 2)
            clock.advance(DELAYS_S[min(attempt, len(DELAYS_S) - 1)] * 1.25 + 1)
        db.session.expire_all()
        failed = db.session.scalar(select(Delivery).where(Delivery.status == "failed"))
        assert failed is not None and failed.attempts == len(DELAYS_S) + 1
        page.reload()
        row = page.locator(f"#delivery-{failed.id}")
        expect(row).to_contain_text("failed")
        expect(row).to_contain_text("HTTP 500")
        row.get_by_role("button", name="Retry now").click()
        expect(page.get_by_text(f"Delivery {failed.id} will be sent again")).to_be_visible()
        expect(page.locator(f"#delivery-{failed.id}")).to_have_attribute("data-status", "pending")
        send_due(sender, receiver, "/crm", len(DELAYS_S) + 3)
        page.reload()
        expect(page.locator(f"#delivery-{failed.id}")).to_have_attribute("data-status", "delivered")
    finally:
        sender.pool.shutdown(wait=False, cancel_futures=True)

    page.get_by_role("link", name="← Integrations").click()
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_text("No subscriptions yet.")).to_be_visible()


def test_a_refused_target_is_named_next_to_its_field(admin, world: World):
    page = admin
    page.goto("/integrations")
    zapier = page.locator("#zapier")
    expect(zapier).to_contain_text(f"Base URL {world.url}")  # the address to paste into Zapier
    expect(zapier.get_by_role("link", name="API keys")).to_have_attribute("href", "/keys")
    page.get_by_label("Target URL").fill("http://169.254.169.254/latest/meta-data")
    page.get_by_label("tokens.low").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("alert").filter(has_text="link-local")).to_be_visible()
    page.get_by_label("LiteLLM webhook URL").fill("ftp://nowhere")
    page.get_by_role("button", name="Save LiteLLM webhook").click()
    expect(page.get_by_role("alert").filter(has_text="http or https")).to_be_visible()


def test_stripe_settings_saved_write_only_and_a_received_event_shown_with_its_outcome(
    admin, world: World, stripe_api, tmp_path
):
    """Issue 12, acceptance 6: save the signing secret and a price-map row; Stripe's event appears
    with what it did."""
    page = admin
    world.add_tier({"key": "pro", "name": "Pro"})
    page.get_by_role("link", name="Integrations").click()
    webhook_url = page.get_by_label("Webhook URL: add it as an endpoint").input_value()
    assert webhook_url == f"{world.url}/integrations/stripe/default/webhook"
    expect(page.locator("#stripe-state")).to_contain_text("not set: every event is refused")

    # An incomplete row is refused with its reason, and nothing is saved.
    page.get_by_label("Tokens, row 1").fill("1000")
    page.get_by_role("button", name="Save Stripe settings").click()
    expect(
        page.get_by_text("Give the Stripe price id of this row.", exact=True)
    ).to_be_visible()  # by the row
    expect(page.get_by_role("alert").get_by_role("link")).to_have_text(
        "Stripe price id, row 1: Give the Stripe price id of this row."
    )
    db.session.expire_all()
    assert world.project.stripe_prices == {}

    page.get_by_label("Webhook signing secret").fill(SECRET)
    page.get_by_label("Stripe API key").fill(API_KEY)
    page.get_by_label("Stripe price id, row 1").fill(PACK)
    page.get_by_label("Tokens, row 1").fill("1000")
    page.get_by_label("Tier, row 1").select_option("pro")
    page.get_by_role("button", name="Save Stripe settings").click()
    expect(page.get_by_text("Stripe settings saved: 1 price in the map.")).to_be_visible()
    expect(page.locator("#stripe-state")).to_contain_text("Signing secret: saved")
    # Write-only: the saved secret and key are never put back into the page.
    assert page.get_by_label("Webhook signing secret").input_value() == ""
    assert SECRET not in page.content() and API_KEY not in page.content()
    assert page.get_by_label("Stripe price id, row 1").input_value() == PACK
    db.session.expire_all()
    assert world.project.stripe_prices == {PACK: {"tokens": 1000, "tier": "pro"}}

    session = checkout_session(client_reference_id="alice")
    stripe_api.add_session(session["id"], [(PACK, 2)])
    evt = event("checkout.session.completed", session)
    assert Stripe(world, webhook_url).send(evt).status_code == 200
    page.reload()
    row = page.locator(f"#stripe-{evt['id']}")
    expect(row).to_have_attribute("data-outcome", "credited")
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("+2,000")
    expect(row).to_contain_text("credited 2,000 tokens from the price map; tier pro v1")
    page.screenshot(path=str(tmp_path / "integrations-stripe.png"), full_page=True)
    page.get_by_role("link", name="Every received event").click()
    expect(page.locator(f"#stripe-{evt['id']}")).to_have_attribute("data-outcome", "credited")
    page.get_by_label("Outcome").select_option("ignored")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("No events with this outcome.")).to_be_visible()
