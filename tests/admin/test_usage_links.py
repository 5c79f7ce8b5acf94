"""The admin's "Copy usage link" and "Revoke all usage links" on a customer's page, and the
Settings page's embedding origins (SPEC 10; issue 16, item 3)."""

from __future__ import annotations

import html
import re

from app.extensions import db
from tests.admin.test_sign_in_and_customers import client_for, form_post, sign_in
from tests.factories import World


def shown_link(page: bytes) -> str:
    found = re.search(rb'<input id="usage-link-url" type="text" readonly value="([^"]+)"', page)
    assert found, page.decode()[-2000:]
    return html.unescape(found.group(1).decode())


def test_the_owner_makes_a_link_that_opens_the_customers_page_then_revokes_every_link(
    owner, world: World, app
):
    page = owner.get("/customers/acme").data.decode()
    assert "Copy usage link" in page and "Revoke all usage links" in page
    assert "/portal/" not in page and '<div class="made-link" hidden>' in page  # no link until asked
    made = form_post(owner, "/customers/acme/portal-link", {}, "/customers/acme")
    assert made.status_code == 201
    url = shown_link(made.data)
    assert url.startswith("http://localhost/portal/")
    assert "copy it now, it is not shown again" in made.data.decode()
    stranger = app.test_client()
    opened = stranger.get(url.removeprefix("http://localhost"))
    assert opened.status_code == 200 and "acme" in opened.data.decode()
    token = url.rsplit("/", 1)[1]
    assert token not in owner.get("/customers/acme").data.decode()  # shown once
    second = shown_link(form_post(owner, "/customers/acme/portal-link", {}, "/customers/acme").data)
    revoked = form_post(owner, "/customers/acme/portal-link/revoke", {}, "/customers/acme")
    assert revoked.status_code == 302
    notice = "All usage links of this customer were revoked. Links made from now on work."
    assert notice in owner.get(revoked.headers["Location"]).data.decode()
    for link in (url, second):
        assert stranger.get(link.removeprefix("http://localhost")).status_code == 404


def test_a_script_asking_for_json_gets_the_link_and_revoking_asks_first(owner, world: World, app):
    from tests.admin.test_sign_in_and_customers import csrf, hidden_inputs

    page = owner.get("/customers/acme")
    sent = {name.decode(): value.decode() for name, value in hidden_inputs(page.data).items()}
    made = owner.post(
        "/customers/acme/portal-link",
        data={**sent, "csrf_token": csrf(page.data)},
        headers={"Accept": "application/json"},
    )
    assert made.status_code == 201 and made.mimetype == "application/json"
    body = made.get_json()
    assert set(body) == {"url", "expires_at"} and body["expires_at"].endswith("Z")
    assert app.test_client().get(body["url"].removeprefix("http://localhost")).status_code == 200
    no_token = owner.post("/customers/acme/portal-link", headers={"Accept": "application/json"})
    assert no_token.status_code == 400  # CSRF holds for the script too
    text = page.data.decode()
    revoke = text[text.index('<details class="revoke-links">') : text.index("</details>")]
    assert "<summary>Revoke all usage links…</summary>" in revoke and "portal-link/revoke" in revoke
    assert 'src="/static/js/usage_link.js"' in text and "onclick=" not in text


def test_viewers_see_no_link_controls_and_cannot_make_one(owner, app):
    viewer = client_for(app)
    assert sign_in(viewer, email="viewer@example.com").status_code == 302
    page = viewer.get("/customers/acme").data.decode()
    assert "Customer usage page" in page and "Copy usage link" not in page and "Revoke all" not in page
    assert form_post(viewer, "/customers/acme/portal-link", {}, "/customers/acme").status_code == 403


def settings_form(world: World) -> dict[str, str]:
    return {
        "new_customer_initial_tokens": "100000",
        "default_tier": str(world.project.default_tier_id),
        "default_shedding_tier": "middle",
        "default_allowed_regions": "",
        "low_balance_tokens": "",
        "shedding_level": "off",
        "capacity": "",
    }


def test_settings_lists_the_sites_that_may_embed_the_page(owner, world: World):
    assert "Sites that may embed the customer usage page" in owner.get("/settings").data.decode()
    origins = "https://app.example.com\r\nhttps://*.example.org, http://localhost:3000"
    saved = form_post(
        owner, "/settings", {**settings_form(world), "portal_frame_origins": origins}, "/settings"
    )
    assert saved.status_code == 302
    db.session.expire_all()
    assert world.project.portal_frame_origins == [
        "https://app.example.com",
        "https://*.example.org",
        "http://localhost:3000",
    ]
    shown = owner.get("/settings").data.decode()
    assert "https://app.example.com\nhttps://*.example.org\nhttp://localhost:3000</textarea>" in shown
    bad = form_post(
        owner,
        "/settings",
        {**settings_form(world), "portal_frame_origins": "https://app.example.com/embed"},
        "/settings",
    )
    assert bad.status_code == 400
    assert "is not an origin like https://app.example.com" in html.unescape(bad.data.decode())
    db.session.expire_all()
    assert len(world.project.portal_frame_origins) == 3
