"""Webhook targets (SPEC 7.2): http or https only, never a link-local address, whatever its spelling
or whatever a name resolves to; 400 naming target_url, and no hook is stored. Names resolve from
tests/api/conftest.py's table: nothing here looks anything up on the internet."""

from __future__ import annotations

import pytest

from app.events import targets
from app.extensions import db
from app.keys.operations import create_key
from app.models.event import Hook
from tests.api.test_customers import api, error
from tests.factories import World

REFUSED = [
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/x",
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/",  # ...in hex
    "http://0251.0376.0251.0376/",  # ...in octal
    "http://169.254.43518/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/latest/meta-data",  # AWS's metadata over IPv6
    "https://metadata.test/hook",  # a name with one link-local address among others
    "https://metadata6.test/hook",
    "http://user:pw@169.254.169.254:8080/",
    "file:///etc/passwd",
    "ftp://x/",
    "javascript:alert(1)",
    "gopher://127.0.0.1:25/",
    "example.com/hook",
    "//example.com/hook",
    "http:///no-host",
    "http://x:99999/",
    "http://[::1/",
]
ACCEPTED = [
    "http://127.0.0.1:9/x",
    "https://example.com/hook",
    "http://[::1]:8080/x",
    "http://10.0.0.5/hook",
    "HTTPS://Example.COM/hook",
    "https://not-yet-resolvable.invalid/hook",  # checked again when connecting
]


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


@pytest.mark.parametrize("url", REFUSED)
def test_refused_target_is_400_naming_target_url_and_stores_nothing(world: World, admin: str, url):
    resp = api(world, admin, "POST", "/hooks", json={"target_url": url, "event": "tokens.low"})
    assert resp.status_code == 400, resp.text
    body = error(resp)
    assert body["code"] == "invalid_request" and body["param"] == "target_url"
    assert body["message"].startswith("target_url: must ")
    assert world.count(Hook) == 0


@pytest.mark.parametrize("url", ACCEPTED)
def test_http_and_https_targets_are_subscribed(world: World, admin: str, url):
    resp = api(world, admin, "POST", "/hooks", json={"target_url": url, "event": "tokens.low"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["target_url"] == url
    assert world.count(Hook) == 1


def test_link_local_refusal_says_what_the_host_is():
    with pytest.raises(
        targets.TargetRefused, match=r"link-local address \(2852039166 is 169\.254\.169\.254\)"
    ):
        targets.check("http://2852039166/")
    with pytest.raises(targets.TargetRefused, match=r"link-local address$"):
        targets.check("http://169.254.1.1/")
    assert targets.check("https://example.com/hook") is None


def test_a_name_is_resolved_at_every_check(monkeypatch):
    """check() resolves the name each time it is called (nothing cached), so the outbox's check at
    connect time (issue 11) refuses a name that has moved to a link-local address since."""
    from tests.api import conftest

    targets.check("https://later.test/hook")
    monkeypatch.setitem(conftest.NAMES, "later.test", ["169.254.169.254"])
    with pytest.raises(targets.TargetRefused):
        targets.check("https://later.test/hook")
