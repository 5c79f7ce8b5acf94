"""The usage tiers pages (issue 16, build 4): every version's limits at a glance, "none allowed" for a
0 limit wherever a tier is shown, migrate with version pickers and a preview of who moves, and the
offer to make the new version the default after a migrate off the default."""

from __future__ import annotations

import html
import re

from app.extensions import db
from app.models.project import Project
from app.models.tier import UsageTier
from tests.admin.test_sign_in_and_customers import client_for, form_post, sign_in
from tests.factories import World, assign, chat

TRIAL = {
    "key": "trial",
    "name": "Trial",
    "period": "month",
    "replenish_tokens": 50_000,
    "limits": {
        "standard": {"calls": 100, "tokens": None},
        "premium": {"calls": 0, "tokens": 5000},
        "reasoning": {"calls": None, "tokens": 0},
    },
    "on_limit": "restrict",
    "restrict_to": "standard",
    "rpm_limit": 60,
}


def text(html_: str) -> str:
    """What a person reads: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_)).split())


def version_row(page: str, key: str, version: int) -> str:
    row = re.search(rf'<tr id="tier-{key}-v{version}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {key} v{version}"
    return row.group(1)


def limit_lines(fragment: str) -> dict[str, str]:
    """The at-a-glance limits: model tier → what its limits read."""
    return {
        text(dt): text(dd) for dt, dd in re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", fragment, re.S)
    }


READ = {
    "Standard": "100 calls · no token limit",
    "Premium": "none allowed",
    "Super premium": "no limit",
    "Reasoning": "none allowed",
}


def test_the_tier_list_shows_each_versions_limits_at_a_glance(owner, world: World):
    world.add_tier(TRIAL)
    page = owner.get("/tiers").data.decode()
    trial = version_row(page, "trial", 1)
    assert limit_lines(trial) == READ
    for shown in (
        "Per month, calendar (UTC)",
        "Balance reset to 50,000 tokens each period",
        "Prepaid · hard cap",
        "60 requests/min",
        "Restrict to standard",
        "editable",
    ):
        assert shown in text(trial), shown
    assert 'data-label="Customers" class="num"><a href="/customers?tier=' in trial and ">0</a>" in trial
    default = version_row(page, "default", 1)
    assert "No limit on any model tier" in text(default) and "none allowed" not in default
    assert "Default for new customers" in text(default) and "Default for new customers" not in text(trial)
    assert "locked" in text(default)  # acme is on it


def test_the_version_page_reads_0_as_none_allowed_and_an_empty_limit_as_no_limit(owner, world: World):
    world.add_tier(TRIAL)
    page = owner.get("/tiers/trial/versions/1/edit").data.decode()
    glance = re.search(r'<section class="card version-glance".*?</section>', page, re.S).group(0)
    assert limit_lines(glance) == READ
    assert "0 customers on it now · editable" in text(glance)
    premium_calls = re.search(
        r'<input[^>]*id="limits-premium-calls"[^>]*>\s*<p class="hint bad">(.*?)</p>', page
    )
    assert (
        premium_calls and 'value="0"' in premium_calls.group(0) and premium_calls.group(1) == "none allowed"
    )
    empty = re.search(r'<input[^>]*id="limits-super_premium-calls"[^>]*>', page).group(0)
    assert 'placeholder="no limit"' in empty and 'value=""' in empty


def test_the_customer_usage_tab_reads_a_0_limit_as_none_allowed(owner, world: World):
    assign(world, "acme", world.add_tier(TRIAL))
    page = owner.get("/customers/acme?tab=usage").data.decode()
    rows = {
        text(cells[0]): [text(c) for c in cells[1:]]
        for cells in (
            re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", page.split("<h2>", 1)[1].split("</table>", 1)[0], re.S)
        )
        if cells
    }
    assert rows["premium"][:3] == ["0 / none allowed", "0 / 5,000", "none allowed"]
    assert rows["reasoning"][:3] == ["0", "0 / none allowed", "none allowed"]
    assert rows["super premium"][:3] == ["0", "0", "no limit"]
    assert rows["standard"][0] == "0 / 100" and rows["standard"][2].endswith("0%")  # a meter


def _two_versions(world: World, customers: int) -> tuple[UsageTier, UsageTier]:
    """pro v1 with `customers` customers c000, c001… (named Customer 0…, balance 1,000 + n), and v2."""
    from app.tiers.operations import clone_tier

    pro = world.add_tier({"key": "pro", "name": "Pro"})
    for n in range(customers):
        world.give_customer(f"c{n:03}", 1000 + n, name=f"Customer {n}")
        assign(world, f"c{n:03}", pro)
    v2 = clone_tier(db.session, pro)
    world.commit()
    return pro, v2


def _options(page: str, field: str) -> list[tuple[str, str, bool]]:
    select = re.search(rf'<select[^>]*id="{field}"[^>]*>(.*?)</select>', page, re.S)
    assert select, f"{field} is not a select"
    return [
        (value, text(label), "selected" in attrs)
        for attrs, value, label in re.findall(
            r'<option([^>]*?value="([^"]*)"[^>]*)>(.*?)</option>', select.group(1)
        )
    ]


def test_migrate_picks_versions_from_lists_with_their_customer_counts(owner, world: World):
    _two_versions(world, 2)
    page = owner.get("/tiers/pro/migrate").data.decode()
    expected = [("1", "v1 · Pro · 2 customers"), ("2", "v2 · Pro · 0 customers")]
    assert [(v, label) for v, label, _ in _options(page, "from_version")] == expected
    # From the version that has customers to the newest, unless the link says otherwise.
    assert [v for v, _, chosen in _options(page, "from_version") if chosen] == ["1"]
    assert [v for v, _, chosen in _options(page, "to_version") if chosen] == ["2"]
    linked = owner.get("/tiers/pro/migrate?from_version=2&to_version=1").data.decode()
    assert [v for v, _, chosen in _options(linked, "from_version") if chosen] == ["2"]
    newest = owner.get("/tiers/pro/migrate?from_version=2").data.decode()  # Migrate… on the newest
    assert [v for v, _, chosen in _options(newest, "to_version") if chosen] == ["1"]  # not v2 to v2
    default = owner.get("/tiers/default/migrate").data.decode()
    assert _options(default, "from_version")[0][1] == "v1 · Default New Customer Tier · 1 customer · default"


def test_the_preview_lists_who_would_move_and_moves_nobody(owner, world: World):
    pro, _ = _two_versions(world, 103)
    resp = form_post(
        owner, "/tiers/pro/migrate", {"from_version": "1", "to_version": "2"}, "/tiers/pro/migrate"
    )
    page = resp.data.decode()
    assert resp.status_code == 200
    preview = re.search(r'<section class="card section migrate-preview".*?</section>', page, re.S).group(0)
    assert "103 customers would move from v1 to v2" in text(preview)
    listed = re.findall(
        r'<tr><th scope="row"><a [^>]*>(.*?)</a>'
        r'(?:\s*<span class="badge waiting">awaiting approval</span>)?</th>\s*'
        r"<td[^>]*><code>(.*?)</code></td>\s*<td[^>]*>(.*?)</td>",
        preview,
    )
    assert len(listed) == 100
    assert listed[0] == ("Customer 0", "c000", "1,000 tokens") and listed[99] == (
        "Customer 99",
        "c099",
        "1,099 tokens",
    )
    assert "The first 100 of 103" in text(preview) and "… and 3 more." in text(preview)
    assert "Move 103 customers to v2" in text(preview)
    assert world.customer("c000").tier_id == pro.id  # a preview moves nobody

    chosen = form_post(
        owner,
        "/tiers/pro/migrate",
        {"from_version": "1", "to_version": "2", "customer_ids": "c002\nc001\n"},
        "/tiers/pro/migrate",
    ).data.decode()
    assert "2 customers would move" in text(chosen) and "more." not in text(chosen)
    assert re.findall(r"<code>(c\d+)</code>", chosen) == ["c001", "c002"]
    # The confirm button sends exactly what was previewed.
    confirm = re.search(r'<form method="post" action="/tiers/pro/migrate">(.*?)</form>', chosen, re.S).group(
        1
    )
    assert '<textarea name="customer_ids" hidden>c002\nc001\n</textarea>' in confirm
    assert '<input type="hidden" name="confirm" value="y">' in confirm


def test_the_preview_marks_awaiting_customers_and_says_a_replenishing_target_credits_them(
    owner, world: World
):
    from app.tiers.operations import edit_tier

    pro, v2 = _two_versions(world, 2)
    for n, name in enumerate(("Waiting Wanda", "Waiting Walt")):
        world.give_customer(f"w{n}", 0, name=name)  # never credited: awaiting approval
        assign(world, f"w{n}", pro)
    page = form_post(
        owner, "/tiers/pro/migrate", {"from_version": "1", "to_version": "2"}, "/tiers/pro/migrate"
    )
    preview = re.search(
        r'<section class="card section migrate-preview".*?</section>', page.data.decode(), re.S
    )
    rows = dict(re.findall(r'<tr><th scope="row"><a [^>]*>(.*?)</a>(.*?)</th>', preview.group(0), re.S))
    assert {name: "awaiting approval" in rest for name, rest in rows.items()} == {
        "Customer 0": False,
        "Customer 1": False,
        "Waiting Wanda": True,
        "Waiting Walt": True,
    }
    assert "replenish-note" not in preview.group(0)  # v2 gives nothing back each period

    edit_tier(db.session, v2, {"period": "month", "replenish_tokens": 50_000})
    world.commit()
    page = form_post(
        owner, "/tiers/pro/migrate", {"from_version": "1", "to_version": "2"}, "/tiers/pro/migrate"
    )
    said = text(re.search(r'<p class="replenish-note">.*?</p>', page.data.decode(), re.S).group(0))
    assert said == (
        "On v2 every customer's balance is set to 50,000 tokens at the start of each period: the customers "
        "who move get it at their next period. That includes the 2 awaiting approval, who will then have "
        "tokens without an Approve."
    )
    assert page.data.decode().index("replenish-note") < page.data.decode().index("<table")  # above the list


def test_ids_not_on_the_version_are_refused_in_the_labels_words(owner, world: World):
    _two_versions(world, 1)
    resp = form_post(
        owner,
        "/tiers/pro/migrate",
        {"from_version": "1", "to_version": "2", "customer_ids": "c000\nghost", "confirm": "y"},
        "/tiers/pro/migrate",
    )
    page = resp.data.decode()
    assert resp.status_code == 400
    assert '<a href="#customer_ids">Only these customers: Not on pro v1: ghost</a>' in page
    assert world.customer("c000").tier_id != world.customer("acme").tier_id  # c000 is still on pro v1
    same = form_post(
        owner, "/tiers/pro/migrate", {"from_version": "2", "to_version": "2"}, "/tiers/pro/migrate"
    )
    assert same.status_code == 400 and "From version and to version are the same" in same.data.decode()
    for sent in ({"to_version": "2"}, {"from_version": "one", "to_version": "2"}):
        bad = form_post(owner, "/tiers/pro/migrate", sent, "/tiers/pro/migrate")
        assert bad.status_code == 400 and '<a href="#from_version">From version: ' in bad.data.decode()
    for field, sent in (
        ("to_version", {"from_version": "1", "to_version": "9"}),
        ("from_version", {"from_version": "9", "to_version": "1"}),
    ):
        missing = form_post(owner, "/tiers/pro/migrate", sent, "/tiers/pro/migrate")
        summary = re.search(r'<div class="error-summary".*?</div>', missing.data.decode(), re.S).group(0)
        assert missing.status_code == 400 and f'href="#{field}"' in summary, (
            summary
        )  # beside the picker asked


def test_after_a_migrate_off_the_default_the_admin_offers_the_new_version(owner, world: World, app):
    default_v1 = db.session.get(UsageTier, world.project.default_tier_id)
    starter = form_post(owner, "/tiers/default/versions/1/clone", {}, "/tiers")
    assert starter.headers["Location"].endswith("/tiers/default/versions/2/edit")
    moved = form_post(
        owner,
        "/tiers/default/migrate",
        {"from_version": "1", "to_version": "2", "confirm": "y"},
        "/tiers/default/migrate",
    )
    assert moved.status_code == 302
    assert moved.headers["Location"].endswith("/tiers/default/migrated?from_version=1&to_version=2")
    result = owner.get(moved.headers["Location"]).data.decode()
    offer = re.search(r'<section class="card offer".*?</section>', result, re.S).group(0)
    assert "New customers still start on Default New Customer Tier v1" in text(offer)
    assert "Moved 1 customer from default v1 to v2." in text(result)
    button = re.search(
        r'<form method="post" action="([^"]+)">.*?<button type="submit">(.*?)</button>', offer, re.S
    )
    assert button.groups() == (
        "/tiers/default/versions/2/default",
        "Make Default New Customer Tier v2 the default for new customers",
    )

    made = form_post(owner, button.group(1), {}, moved.headers["Location"])
    assert made.status_code == 302 and made.headers["Location"].endswith("/tiers")
    assert "New customers now start on Default New Customer Tier (default v2)." in text(
        owner.get("/tiers").data.decode()
    )
    db.session.expire_all()
    v2 = db.session.scalar(db.select(UsageTier).where(UsageTier.key == "default", UsageTier.version == 2))
    assert db.session.get(Project, world.project.id).default_tier_id == v2.id
    # New customers land on v2: the proxy creates one on its first call.
    app.extensions["tollgate.gateway"].cache.invalidate()
    assert chat(world.url, world.key, "newcomer").status_code == 200
    assert world.customer("newcomer").tier_id == v2.id != default_v1.id
    after = owner.get(moved.headers["Location"]).data.decode()
    assert (
        'class="card offer"' not in after
        and "New customers start on Default New Customer Tier (default v2)" in text(after)
    )


def test_a_migrate_between_versions_that_are_not_the_default_offers_nothing(owner, world: World):
    _two_versions(world, 1)
    moved = form_post(
        owner,
        "/tiers/pro/migrate",
        {"from_version": "1", "to_version": "2", "confirm": "y"},
        "/tiers/pro/migrate",
    )
    result = owner.get(moved.headers["Location"]).data.decode()
    assert 'class="card offer"' not in result and "/default" not in result.split("<main>", 1)[1]
    assert "New customers start on Default New Customer Tier (default v1)" in text(result)


def test_the_tier_list_offers_make_default_on_every_other_version(owner, world: World, app):
    world.add_tier(TRIAL)
    page = owner.get("/tiers").data.decode()
    assert 'action="/tiers/trial/versions/1/default"' in version_row(page, "trial", 1)
    assert "/versions/1/default" not in version_row(page, "default", 1)  # already the default
    made = form_post(owner, "/tiers/trial/versions/1/default", {}, "/tiers")
    assert made.status_code == 302
    page = owner.get("/tiers").data.decode()
    assert "Default for new customers" in text(version_row(page, "trial", 1))
    assert 'action="/tiers/default/versions/1/default"' in version_row(page, "default", 1)
    assert form_post(owner, "/tiers/trial/versions/9/default", {}, "/tiers").status_code == 404

    viewer = client_for(app)
    sign_in(viewer, email="viewer@example.com")
    seen = viewer.get("/tiers").data.decode()
    assert "Default for new customers" in text(version_row(seen, "trial", 1)) and '/default"' not in seen
    assert form_post(viewer, "/tiers/default/versions/1/default", {}, "/tiers").status_code == 403
    db.session.expire_all()
    trial = db.session.scalar(db.select(UsageTier).where(UsageTier.key == "trial"))
    assert db.session.get(Project, world.project.id).default_tier_id == trial.id


def test_a_move_of_everyone_confirmed_after_the_version_changed_moves_nobody_and_shows_it_again(
    owner, world: World
):
    """Preview says N; customers join the version before Move is pressed: nobody moves, and the
    preview comes back with the new count for the owner to confirm."""
    pro, _ = _two_versions(world, 1)
    sent = {"from_version": "1", "to_version": "2", "confirm": "y"}
    preview = form_post(
        owner, "/tiers/pro/migrate", {"from_version": "1", "to_version": "2"}, "/tiers/pro/migrate"
    )
    previewed = int(re.search(r'name="previewed" value="(\d+)"', preview.data.decode()).group(1))
    source = world.customer("c000").tier_id
    world.give_customer("latecomer", 10)
    assign(world, "latecomer", pro)
    changed = form_post(
        owner, "/tiers/pro/migrate", {**sent, "previewed": str(previewed)}, "/tiers/pro/migrate"
    )
    page = html.unescape(changed.data.decode())
    assert changed.status_code == 409
    assert f"Nobody moved: {previewed + 1} customers would move now, {previewed} when you previewed." in page
    assert world.customer("c000").tier_id == source  # nobody moved
    moved = form_post(
        owner, "/tiers/pro/migrate", {**sent, "previewed": str(previewed + 1)}, "/tiers/pro/migrate"
    )
    assert moved.status_code == 302 and world.customer("latecomer").tier_id != source
