"""What a new user's trial of the admin found: hints that name the real headers, settings that were
missing, tables that lost their labels on a phone, a ledger that did not add up on screen."""

from __future__ import annotations

import re

from app.extensions import db
from tests.factories import World, chat


def test_the_new_customer_hint_names_what_the_proxy_reads(owner, world: World):
    page = owner.get("/customers").data.decode()
    hint = re.search(r'<p class="hint muted" id="customer_id-hint">(.*?)</p>', page, re.S).group(1)
    assert "<code>X-Customer-Id</code>" in hint and "<code>user</code>" in hint
    assert "<code>customer.customer_id</code>" in hint
    assert "X-Tollgate-Customer" not in page and "`" not in hint


def settings_form(world: World, **changes: str) -> dict[str, str]:
    return {
        "new_customer_initial_tokens": "0",
        "default_tier": str(world.project.default_tier_id),
        "default_shedding_tier": "middle",
        "default_allowed_regions": "",
        "low_balance_tokens": "",
        "shedding_level": "off",
        "capacity": "",
        **changes,
    }


def test_the_approval_amount_is_a_setting_and_the_approve_error_links_to_it(owner, world: World):
    from app.models.project import Project
    from tests.admin.test_sign_in_and_customers import form_post

    world.give_customer("newcomer", 0)
    refused = form_post(owner, "/customers/newcomer/approve", {"approve_tokens": ""}, "/customers/newcomer")
    assert refused.status_code == 400
    error = re.search(r'<p class="field-error" role="alert">(.*?)</p>', refused.data.decode(), re.S).group(1)
    assert "no approval amount in its settings" in error
    assert '<a href="/settings#approval_tokens">' in error

    page = owner.get("/settings").data.decode()
    assert 'id="approval_tokens"' in page and "Approval amount (tokens)" in page
    assert "refused until you approve it" in page  # 0 initial tokens: the customer waits
    for bad in ("0", "-3", "many"):
        resp = form_post(owner, "/settings", settings_form(world, approval_tokens=bad), "/settings")
        assert resp.status_code == 400 and "approval_tokens-error" in resp.data.decode(), bad
    assert (
        form_post(owner, "/settings", settings_form(world, approval_tokens="2500"), "/settings").status_code
        == 302
    )
    db.session.expire_all()
    assert db.session.get(Project, world.project.id).approval_tokens == 2500
    assert 'value="2500"' in owner.get("/settings").data.decode()
    assert (
        form_post(
            owner, "/customers/newcomer/approve", {"approve_tokens": ""}, "/customers/newcomer"
        ).status_code
        == 302
    )
    assert world.customer("newcomer").token_balance == 2500
    assert (
        form_post(owner, "/settings", settings_form(world, approval_tokens=""), "/settings").status_code
        == 302
    )
    db.session.expire_all()
    assert db.session.get(Project, world.project.id).approval_tokens is None


def table_cells(page: str, marker: str) -> list[str]:
    """The opening tags of the body cells of the table whose opening tag has `marker`."""
    start = page.index(marker)
    table = page[start : page.index("</table>", start)]
    return re.findall(r"<td\b[^>]*>", table[table.index("<tbody>") :])


def test_usage_and_ledger_tables_keep_their_column_labels_on_a_phone(owner, world: World):
    usage = owner.get("/customers/acme?tab=usage").data.decode()
    cells = table_cells(usage, '<table class="dash-table usage">')
    assert len(cells) == 4 * 5 and all("data-label=" in cell for cell in cells)
    ledger = owner.get("/customers/acme?tab=ledger").data.decode()
    cells = table_cells(ledger, '<table class="dash-table ledger">')
    assert len(cells) == 6 and all("data-label=" in cell for cell in cells)
    assert 'data-label="Balance after"' in ledger


def test_the_ledger_tab_reconciles_the_balance_with_the_calls_charges(owner, world: World):
    reply = chat(world.url, world.key, "acme")
    assert reply.status_code == 200
    charged = reply.json()["usage"]["total_tokens"]
    page = owner.get("/customers/acme?tab=ledger").data.decode()
    line = re.sub(r"<[^>]+>|\s+", " ", re.search(r'<p class="reconcile".*?</p>', page, re.S).group(0))
    assert " ".join(line.split()) == (
        f"Balance {1000 - charged:,} = ledger entries 1,000 \N{MINUS SIGN} tokens charged by calls {charged}"
    )
    assert page.index('class="reconcile"') < page.index('<table class="dash-table ledger">')


def test_a_customer_made_by_hand_is_never_seen_until_its_first_call(owner, world: World):
    from tests.admin.test_sign_in_and_customers import form_post

    made = form_post(
        owner,
        "/customers",
        {
            "customer_id": "by-hand",
            "name": "",
            "email": "",
            "tokens": "50000",
            "tier": world.project.default_tier_id,
        },
        "/customers",
    )
    assert made.status_code == 302, made.data.decode()[-3000:]
    assert world.customer("by-hand").last_seen_at is None
    assert "last seen never" in " ".join(owner.get("/customers/by-hand").data.decode().split())
    reply = chat(world.url, world.key, "by-hand")
    assert reply.status_code == 200, reply.text
    assert world.customer("by-hand").last_seen_at is not None  # the proxy still marks it
    assert chat(world.url, world.key, "first-call").status_code == 200
    assert world.customer("first-call").last_seen_at is not None  # made by its first call: seen


def test_the_add_admin_form_offers_the_viewer_role_first(owner):
    page = owner.get("/admins").data.decode()
    form = page[page.rindex("<form", 0, page.index('name="password"')) :]
    assert re.search(r'<option selected value="viewer">|<option value="viewer" selected>', form), form[:1500]
