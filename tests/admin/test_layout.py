"""What every admin page shares (issue 16, item 4): the favicon, the header's navigation, and a
customer's header naming a customer without a name once. The measured layout at 375 px is
tests/browser/test_every_page.py."""

from __future__ import annotations

import re

from app import config
from tests.admin.test_sign_in_and_customers import client_for
from tests.factories import World

ICON_LINK = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'


def test_the_favicon_answers_at_favicon_ico_and_every_kind_of_page_links_it(app, owner):
    stranger = client_for(app)
    icon = stranger.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.data == (config.ROOT / "static" / "favicon.svg").read_bytes()
    assert "set-cookie" not in icon.headers  # no session for an icon
    assert ICON_LINK in stranger.get("/auth/sign-in").data.decode()
    missing = stranger.get("/no-such-page")
    assert missing.status_code == 404 and ICON_LINK in missing.data.decode()
    assert ICON_LINK in owner.get("/keys").data.decode()


def test_the_navigation_marks_the_section_the_page_is_in(owner):
    page = owner.get("/models").data.decode()
    nav = re.search(r'<nav aria-label="Admin">(.*?)</nav>', page, re.S).group(1)
    current = re.findall(r'<a class="here" aria-current=page href="([^"]+)">([^<]+)</a>', nav)
    assert current == [("/models", "Models")]
    assert len(re.findall(r"<a ", nav)) == 9


def test_a_customer_without_a_name_is_named_once_in_its_header(owner, world: World):
    def header(customer_id: str) -> str:
        page = owner.get(f"/customers/{customer_id}").data.decode()
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)))

    assert world.customer("acme").name == "acme"  # the name defaults to the id
    assert header("acme").split() == ["acme"]
    world.give_customer("globex", 10, name="Globex Corporation")
    assert header("globex").split() == ["Globex", "Corporation", "globex"]
