"""What a new user's trial of the admin found: hints that name the real headers, settings that were
missing, tables that lost their labels on a phone, a ledger that did not add up on screen."""

from __future__ import annotations

import re

from tests.factories import World


def test_the_new_customer_hint_names_what_the_proxy_reads(owner, world: World):
    page = owner.get("/customers").data.decode()
    hint = re.search(r'<p class="hint muted" id="customer_id-hint">(.*?)</p>', page, re.S).group(1)
    assert "<code>X-Customer-Id</code>" in hint and "<code>user</code>" in hint
    assert "<code>customer.customer_id</code>" in hint
    assert "X-Tollgate-Customer" not in page and "`" not in hint
