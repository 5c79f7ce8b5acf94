"""API keys in the admin, and every admin route's guards (issue 5, acceptance 2)."""

from __future__ import annotations

import re
from decimal import Decimal

import requests

from app.extensions import db
from app.keys.operations import create_key
from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, csrf, form_post, sign_in
from tests.factories import World, chat

ADMIN_BLUEPRINTS = (
    "dashboard",
    "customers",
    "keys",
    "settings",
    "admins",
    "tiers",
    "projects",
    "catalog",
    "integrations",
)


def test_create_a_key_shown_once_use_it_then_revoke_it(owner, world: World, app):
    made = form_post(owner, "/keys", {"name": "backend", "scope": "proxy"}, "/keys")
    assert made.status_code == 201
    secret = re.search(
        r'id="new-secret" type="text" readonly value="(tg-[A-Za-z0-9_-]{40})"', made.data.decode()
    )
    assert secret, "the new key is shown"
    secret = secret.group(1)
    listing = owner.get("/keys").data.decode()
    assert secret not in listing and secret[:7] in listing  # afterwards only its prefix
    app.extensions["tollgate.gateway"].cache.invalidate()
    assert chat(world.url, secret, "acme").status_code == 200
    key_id = re.search(r'action="/keys/(\d+)/revoke"', listing).group(1)
    assert form_post(owner, f"/keys/{key_id}/revoke", {}, "/keys").status_code == 302
    # The stamp moved; every worker reloads within a second (here: the next snapshot check).
    app.extensions["tollgate.gateway"].cache.invalidate()
    assert chat(world.url, secret, "acme").status_code == 401
    assert "revoked" in owner.get("/keys").data.decode()


def test_a_key_needs_a_name(owner):
    resp = form_post(owner, "/keys", {"name": "", "scope": "proxy"}, "/keys")
    assert resp.status_code == 400 and "Give the key a name." in resp.data.decode()


def admin_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in ADMIN_BLUEPRINTS:
            values = {arg: ("acme" if arg == "customer_id" else 1) for arg in rule.arguments}
            yield (
                rule,
                app.url_for(rule.endpoint, **values, _external=False) if False else rule.build(values)[1],
            )


def test_every_admin_route_is_guarded(app, owner, world: World):
    rules = list(admin_rules(app))
    assert len(rules) >= 6
    stranger = client_for(app)
    for rule, path in rules:
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            resp = stranger.open(path, method=method)
            if method == "GET":
                assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"], path
            else:
                assert resp.status_code in (302, 400), (method, path, resp.status_code)
    viewer = client_for(app)
    signed = sign_in(viewer, email="viewer@example.com")
    assert signed.status_code == 302, signed.data.decode()[-600:]
    token = csrf(viewer.get("/customers/acme").data)
    for rule, path in rules:
        if "POST" in rule.methods:
            assert viewer.post(path, data={"csrf_token": token}).status_code == 403, path
            assert owner.post(path, data={}).status_code == 400, path  # no CSRF token: refused
    assert world.customer("acme").token_balance == 1000
    assert requests.get(world.url + "/customers", allow_redirects=False, timeout=10).status_code == 302


def test_settings_page_saves_and_refuses_bad_values(owner, world: World, app):
    page = owner.get("/settings").data.decode()
    assert "Initial tokens for new customers" in page and 'value="100000"' in page
    base = {
        "new_customer_initial_tokens": "777",
        "default_tier": str(world.project.default_tier_id),
        "default_shedding_tier": "high",
        "default_allowed_regions": "",
        "low_balance_tokens": "50",
        "shedding_level": "off",
        "capacity": "",
    }
    for bad, message in [
        ({"new_customer_initial_tokens": "-1"}, "Enter 0 or more tokens."),
        ({"default_allowed_regions": "mars"}, "Unknown region"),
    ]:
        resp = form_post(owner, "/settings", {**base, **bad}, "/settings")
        assert resp.status_code == 400 and message in resp.data.decode()
    assert form_post(owner, "/settings", base, "/settings").status_code == 302
    app.extensions["tollgate.gateway"].cache.invalidate()
    reply = chat(world.url, world.key, "newcomer")
    assert reply.status_code == 200
    newcomer = world.customer("newcomer")
    assert newcomer.token_balance == 777 - reply.json()["usage"]["total_tokens"]
    assert newcomer.shedding_tier == "high"


def test_admin_users_add_change_role_and_the_last_owner_stays(owner, app):
    from app.models.admin_user import AdminUser

    assert (
        form_post(
            owner,
            "/admins",
            {"email": "new@example.com", "password": "longenough", "role": "viewer"},
            "/admins",
        ).status_code
        == 302
    )
    duplicate = form_post(
        owner, "/admins", {"email": "NEW@example.com", "password": "longenough", "role": "viewer"}, "/admins"
    )
    assert duplicate.status_code == 400 and "already exists" in duplicate.data.decode()
    short = form_post(
        owner, "/admins", {"email": "x@example.com", "password": "short", "role": "owner"}, "/admins"
    )
    assert short.status_code == 400 and "At least 8 characters." in short.data.decode()
    me = db.session.scalar(db.select(AdminUser).where(AdminUser.email == "owner@example.com"))
    refused = form_post(owner, f"/admins/{me.id}/role", {"role": "viewer"}, "/admins")
    assert refused.status_code == 302 and "last owner" in owner.get("/admins").data.decode()
    form_post(owner, f"/admins/{me.id}/remove", {}, "/admins")
    db.session.expire_all()
    assert db.session.get(AdminUser, me.id).role == "owner"  # still here, still an owner
    new = db.session.scalar(db.select(AdminUser).where(AdminUser.email == "new@example.com"))
    assert form_post(owner, f"/admins/{new.id}/role", {"role": "owner"}, "/admins").status_code == 302
    db.session.expire_all()
    assert db.session.get(AdminUser, new.id).role == "owner"
    assert form_post(owner, f"/admins/{new.id}/remove", {}, "/admins").status_code == 302
    db.session.expire_all()
    assert db.session.get(AdminUser, new.id) is None


def test_tiers_list_clone_and_migrate_with_a_preview(owner, world: World):
    from tests.factories import assign

    pro = world.add_tier({"key": "pro", "name": "Pro"})
    for cid in ("a", "b"):
        world.give_customer(cid, 10)
        assign(world, cid, pro)
    listing = owner.get("/tiers").data.decode()
    assert "Pro" in listing and "locked" in listing
    assert form_post(owner, "/tiers/pro/versions/1/clone", {}, "/tiers").status_code == 302
    assert "v2" in owner.get("/tiers").data.decode()
    preview = form_post(
        owner, "/tiers/pro/migrate", {"from_version": "1", "to_version": "2"}, "/tiers/pro/migrate"
    )
    assert preview.status_code == 200 and "2 customers would move" in preview.data.decode()
    assert world.customer("a").tier_id == pro.id  # a preview moves nobody
    moved = form_post(
        owner,
        "/tiers/pro/migrate",
        {"from_version": "1", "to_version": "2", "customer_ids": "a", "confirm": "y"},
        "/tiers/pro/migrate",
    )
    assert moved.status_code == 302
    assert world.customer("a").tier_id != pro.id and world.customer("b").tier_id == pro.id
    missing = form_post(
        owner,
        "/tiers/pro/migrate",
        {"from_version": "1", "to_version": "7", "confirm": "y"},
        "/tiers/pro/migrate",
    )
    assert missing.status_code == 400 and "no version 7" in missing.data.decode()


def test_last_used_is_written_at_most_once_a_minute_per_key(owner, world: World, app):
    from app.models.api_key import ApiKey

    gw = app.extensions["tollgate.gateway"]
    ticks = iter([1000.0, 1010.0, 1070.0])
    saved_clock, gw.key_use.clock = gw.key_use.clock, lambda: next(ticks)
    gw.key_use._written.clear()
    try:

        def last_used():
            db.session.expire_all()
            return db.session.scalar(db.select(ApiKey.last_used_at).where(ApiKey.prefix == world.key[:7]))

        assert last_used() is None

        def row():
            page = owner.get("/keys").data.decode()
            return re.search(r'<tr id="key-\d+">\s*<th scope="row">tests</th>.*?</tr>', page, re.S).group(0)

        assert "never" in row()
        assert chat(world.url, world.key, "acme").status_code == 200
        first = last_used()
        assert first is not None
        assert chat(world.url, world.key, "acme").status_code == 200  # 10 s later: not written again
        assert last_used() == first
        assert chat(world.url, world.key, "acme").status_code == 200  # 70 s after the first: written
        assert last_used() > first
        assert "never" not in row()
    finally:
        gw.key_use.clock = saved_clock


def test_admins_change_their_own_password_viewers_too(app, owner):
    from app.auth.operations import authenticate

    viewer = client_for(app)
    sign_in(viewer, email="viewer@example.com")
    page = viewer.get("/auth/password")
    assert page.status_code == 200 and "viewer@example.com" in page.data.decode()
    for bad, message in [
        ({"current": "wrong password", "new": "n3w-passw0rd", "confirm": "n3w-passw0rd"}, "not your current"),
        ({"current": PASSWORD, "new": "short", "confirm": "short"}, "At least 8 characters."),
        (
            {"current": PASSWORD, "new": "n3w-passw0rd", "confirm": "different1"},
            "The two new passwords differ.",
        ),
    ]:
        resp = form_post(viewer, "/auth/password", bad, "/auth/password")
        assert resp.status_code == 400 and message in resp.data.decode()
        assert authenticate(db.session, "viewer@example.com", PASSWORD) is not None
    done = form_post(
        viewer,
        "/auth/password",
        {"current": PASSWORD, "new": "n3w-passw0rd", "confirm": "n3w-passw0rd"},
        "/auth/password",
    )
    assert done.status_code == 302
    db.session.expire_all()
    assert authenticate(db.session, "viewer@example.com", "n3w-passw0rd") is not None
    assert authenticate(db.session, "viewer@example.com", PASSWORD) is None
    assert authenticate(db.session, "owner@example.com", PASSWORD) is not None  # only their own


def test_reloading_the_key_created_page_makes_no_second_key(owner, world: World):
    from app.models.api_key import ApiKey
    from tests.admin.test_sign_in_and_customers import hidden_inputs

    form = {k.decode(): v.decode() for k, v in hidden_inputs(owner.get("/keys").data).items()}
    sent = {**form, "name": "backend", "scope": "proxy"}
    assert owner.post("/keys", data=sent).status_code == 201
    again = owner.post("/keys", data=sent)  # the browser's "resend the form?" on reload
    assert again.status_code == 302
    assert "sent already" in owner.get("/keys").data.decode()
    names = db.session.scalars(db.select(ApiKey.name).where(ApiKey.project_id == world.project.id)).all()
    assert names.count("backend") == 1
    assert form_post(owner, "/keys", {"name": "backend", "scope": "proxy"}, "/keys").status_code == 201


def test_a_keys_limits_and_spend_show_in_the_admin_and_the_api(owner, world: World):
    """Issue 10: a LiteLLM key's own limits, allow-list, budget and spend, where an operator looks."""
    _, admin = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    made = requests.post(
        world.url + "/key/generate",
        json={
            "key_alias": "nightly",
            "models": ["gpt-test"],
            "rpm_limit": 30,
            "max_budget": 5,
            "budget_duration": "30d",
        },
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    ).json()
    served = chat(world.url, made["key"], "acme")
    cost = served.headers["x-litellm-response-cost"]
    page = owner.get("/keys").data.decode()
    at = page.index('<th scope="row">nightly</th>')
    line = page[at : page.index("</tr>", at)]
    assert "models: gpt-test · 30 rpm · $5.00 budget per 30d" in line
    assert f'data-nusd="{int(Decimal(cost) * 10**9)}"' in line and "of $5.00 (0%)" in line
    listed = requests.get(
        world.url + "/api/keys", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ).json()
    mine = next(k for k in listed["data"] if k["token"] == made["token"])
    assert (mine["rpm_limit"], mine["models"], mine["max_budget_usd"]) == (30, ["gpt-test"], "5.000000000")
    assert (
        mine["spend_usd"] == mine["lifetime_spend_usd"] == f"{Decimal(cost):.9f}" and mine["budget_reset_at"]
    )
    one = requests.get(
        f"{world.url}/api/keys/{mine['id']}", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert one.json() == mine and "key" not in mine
