"""POST/DELETE /api/customers/{customer_id}/portal-link (SPEC 6, 10): a link that opens the
customer's usage page, its lifetime chosen and validated, every link revoked at once; and the
project setting `portal_frame_origins` (issue 16, acceptance 3)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import requests

from app import config
from app.db import now_utc
from app.extensions import db
from app.keys.operations import create_key
from tests.factories import World


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    world.give_customer("acme", 1000, name="Acme Rockets")
    world.give_customer("globex", 500, name="Globex")
    return key


def api(world: World, key: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(
        method, f"{world.url}/api{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw
    )


def error(resp: requests.Response) -> dict:
    body = resp.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


def parse_time(text: str):
    from datetime import datetime

    assert text.endswith("Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_link_opens_the_customers_page_for_the_days_asked(world: World, admin: str):
    before = now_utc()
    made = api(world, admin, "POST", "/customers/acme/portal-link")
    assert made.status_code == 201, made.text
    assert set(made.json()) == {"url", "expires_at"}
    url = made.json()["url"]
    assert url.startswith(f"{world.url}/portal/")
    expires = parse_time(made.json()["expires_at"])
    assert before + timedelta(days=30, seconds=-1) <= expires <= now_utc() + timedelta(days=30)
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and "Acme Rockets" in page.text and "Globex" not in page.text
    assert requests.get(url + "?format=json", timeout=10).json()["customer_id"] == "acme"
    week = api(world, admin, "POST", "/customers/acme/portal-link", json={"expires_in_days": 7})
    assert week.status_code == 201
    assert parse_time(week.json()["expires_at"]) <= now_utc() + timedelta(days=7)
    assert parse_time(week.json()["expires_at"]) >= before + timedelta(days=7, seconds=-1)
    assert api(world, admin, "POST", "/customers/acme/portal-link", json={}).status_code == 201


@pytest.mark.parametrize("days", [0, 366, -1, "30", 1.5, True, None, [30], 10**30])
def test_a_lifetime_outside_one_to_365_days_is_refused_naming_the_field(world: World, admin: str, days):
    refused = api(world, admin, "POST", "/customers/acme/portal-link", json={"expires_in_days": days})
    assert refused.status_code in (400, 422)
    body = error(refused)
    assert body["code"] == "invalid_request" and body["param"] == "expires_in_days"
    assert world.customer("acme").portal_secret is None  # nothing was made


def test_unknown_customers_other_projects_and_proxy_keys(world: World, admin: str):
    from app.projects.operations import create_project

    other = create_project(db.session, "other", "Other")
    _, other_key = create_key(db.session, other, "ops", "admin")
    world.commit()
    for method in ("POST", "DELETE"):
        missing = api(world, admin, method, "/customers/nobody/portal-link")
        assert missing.status_code == 404 and error(missing)["code"] == "not_found"
        elsewhere = api(world, other_key, method, "/customers/acme/portal-link")
        assert elsewhere.status_code == 404
        proxy = api(world, world.key, method, "/customers/acme/portal-link")
        assert proxy.status_code == 403 and error(proxy)["code"] == "forbidden"


def test_delete_revokes_every_link_of_the_customer_at_once(world: World, admin: str):
    first = api(world, admin, "POST", "/customers/acme/portal-link").json()["url"]
    second = api(world, admin, "POST", "/customers/acme/portal-link", json={"expires_in_days": 365}).json()[
        "url"
    ]
    globex = api(world, admin, "POST", "/customers/globex/portal-link").json()["url"]
    assert [requests.get(u, timeout=10).status_code for u in (first, second, globex)] == [200, 200, 200]
    revoked = api(world, admin, "DELETE", "/customers/acme/portal-link")
    assert revoked.status_code == 204 and revoked.content == b""
    assert [requests.get(u, timeout=10).status_code for u in (first, second)] == [404, 404]
    assert requests.get(globex, timeout=10).status_code == 200  # another customer's links stay
    fresh = api(world, admin, "POST", "/customers/acme/portal-link").json()["url"]
    assert requests.get(fresh, timeout=10).status_code == 200
    assert api(world, admin, "DELETE", "/customers/acme/portal-link").status_code == 204
    assert requests.get(fresh, timeout=10).status_code == 404


def test_links_use_the_public_url_when_one_is_configured(app, world: World, admin: str, monkeypatch):
    settings = dataclasses.replace(app.config["TOLLGATE"], public_url="https://usage.example.com")
    monkeypatch.setitem(app.config, "TOLLGATE", settings)
    made = app.test_client().post(
        "/api/customers/acme/portal-link", headers={"Authorization": f"Bearer {admin}"}
    )
    assert made.status_code == 201
    url = made.get_json()["url"]
    assert url.startswith("https://usage.example.com/portal/")
    assert (
        requests.get(world.url + url.removeprefix("https://usage.example.com"), timeout=10).status_code == 200
    )


def test_the_public_url_setting_is_checked(instance_dir):
    base = {"TOLLGATE_INSTANCE_PATH": str(instance_dir), "TOLLGATE_SECRET_KEY": "s" * 48}
    assert config.load(env=base).public_url is None
    assert config.load(env={**base, "TOLLGATE_PUBLIC_URL": "https://gw.example.com/"}).public_url == (
        "https://gw.example.com"
    )
    with pytest.raises(config.ConfigError, match="TOLLGATE_PUBLIC_URL"):
        config.load(env={**base, "TOLLGATE_PUBLIC_URL": "gw.example.com"})


def test_the_openapi_document_lists_both_operations(app):
    spec = app.test_client().get("/api/openapi.json").get_json()
    operations = spec["paths"]["/api/customers/{customer_id}/portal-link"]
    assert set(operations) >= {"post", "delete"}
    post = operations["post"]
    assert "201" in post["responses"] and "204" in operations["delete"]["responses"]
    schemas = spec["components"]["schemas"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    field = schemas[body["$ref"].rsplit("/", 1)[1]]["properties"]["expires_in_days"]
    assert (field["minimum"], field["maximum"], field["default"]) == (1, 365, 30)
    answer = post["responses"]["201"]["content"]["application/json"]["schema"]
    assert set(schemas[answer["$ref"].rsplit("/", 1)[1]]["required"]) == {"url", "expires_at"}


def test_frame_origins_are_set_normalised_and_shown(world: World, admin: str):
    assert api(world, admin, "GET", "/settings").json()["portal_frame_origins"] == []
    changed = api(
        world,
        admin,
        "PATCH",
        "/settings",
        json={
            "portal_frame_origins": [
                "HTTPS://App.Example.com/",
                "https://app.example.com",
                "http://localhost:3000",
                "https://*.example.org",
                "https://[::1]:8443",
            ]
        },
    )
    assert changed.status_code == 200, changed.text
    expected = [
        "https://app.example.com",
        "http://localhost:3000",
        "https://*.example.org",
        "https://[::1]:8443",
    ]
    assert changed.json()["portal_frame_origins"] == expected
    assert api(world, admin, "GET", "/settings").json()["portal_frame_origins"] == expected
    assert (
        api(world, admin, "PATCH", "/settings", json={"portal_frame_origins": []}).json()[
            "portal_frame_origins"
        ]
        == []
    )


@pytest.mark.parametrize(
    "origins",
    [
        ["https://app.example.com/embed"],
        ["ftp://app.example.com"],
        ["app.example.com"],
        ["*"],
        ["https://*"],
        ["https://*.com"],
        ["https://app.*.example.com"],
        ["https://user@app.example.com"],
        ["https://app.example.com?x=1"],
        ["https://app.example.com#top"],
        ["https://app.example.com:0"],
        ["https://app.example.com:99999"],
        ["https://exa mple.com"],
        ["https://app.example.com; script-src *"],
        ["https://bücher.example"],
        [""],
        [7],
        "https://app.example.com",
        [f"https://a{i}.example.com" for i in range(51)],
    ],
)
def test_bad_frame_origins_are_refused_naming_the_field(world: World, admin: str, origins):
    refused = api(world, admin, "PATCH", "/settings", json={"portal_frame_origins": origins})
    assert refused.status_code in (400, 422), refused.text
    assert error(refused)["param"] == "portal_frame_origins"
    db.session.expire_all()
    assert world.project.portal_frame_origins == []
