"""The admin's models and deployments pages (issue 5, build 6 and acceptance 5)."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from app import stamp
from app.cli import add_admin
from app.crypto import unseal
from app.extensions import db
from app.metering.pricing import Price
from app.models import Deployment, Model, ModelTierDefault, UsageRecord
from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, form_post, sign_in
from tests.factories import World, assign, chat
from tests.fakes.upstream import refusing_url


@pytest.fixture
def owner(app, world: World):
    add_admin("owner@example.com", PASSWORD)
    db.session.commit()
    client = client_for(app)
    sign_in(client)
    yield client
    app.extensions["tollgate.signin_throttle"].__init__(None)


def text(resp) -> str:
    return resp.data.decode()


def model_id(name: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(Model.id).where(Model.name == name))


def deployments_of(name: str) -> list[Deployment]:
    db.session.expire_all()
    return list(db.session.scalars(select(Deployment).join(Model).where(Model.name == name)))


def catalog_state() -> tuple:
    """Every catalog row and the config stamp: what a refused change must leave as it was."""
    db.session.expire_all()
    tables = (Model.__table__, Deployment.__table__, ModelTierDefault.__table__)
    rows = tuple(tuple(map(tuple, db.session.execute(t.select().order_by(t.c.id)))) for t in tables)
    return rows, stamp.read(db.session.connection())


def listed(page: str, name: str) -> tuple[str, str]:
    """(price source, the row's HTML) of a model in the list."""
    row = re.search(rf'<tr id="model-{model_id(name)}" data-price-source="([a-z-]+)">(.*?)</tr>', page, re.S)
    assert row, name
    return row.group(1), row.group(2)


def error_next_to(page: str, field_id: str) -> str | None:
    """The error printed right after a field's input, where the `field` macro puts it."""
    tag = re.search(rf'<(input|select)\b[^>]*\bid="{re.escape(field_id)}"[^>]*>', page)
    assert tag, field_id
    rest = page[tag.end() :]
    if tag.group(1) == "select":
        rest = rest[rest.index("</select>") + len("</select>") :]
    # Between them only a checkbox's label text and the field's hint may come.
    between = r'(?:[^<]*</label>)?\s*(?:<p class="hint muted"[^>]*>[^<]*</p>)?\s*'
    error = re.match(between + r'<p class="field-error"[^>]*>(.*?)</p>', rest, re.S)
    return html.unescape(error.group(1)) if error else None


def deployment_form(d: Deployment, **changes: str) -> dict[str, str]:
    """The edit form of a deployment as the page fills it in (the key field empty), with changes."""
    values = {
        "provider": d.provider,
        "base_url": d.base_url,
        "model": d.upstream_model,
        "region": d.region,
        "api_version": d.api_version or "",
        "weight": str(d.weight),
        "timeout_s": str(d.timeout_s),
        "enabled": "y",
        **changes,
    }
    return {f"d{d.id}-{name}": value for name, value in values.items() if value is not None}


def new_deployment(base_url: str, **changes: str) -> dict[str, str]:
    values = {
        "provider": "openai",
        "base_url": base_url,
        "model": "fake-model",
        "region": "us",
        "weight": "1",
        "timeout_s": "30",
        "enabled": "y",
        **changes,
    }
    return {f"new-{name}": value for name, value in values.items()}


def refresh(app) -> None:
    app.extensions["tollgate.gateway"].cache.invalidate()


def test_the_list_says_where_each_price_comes_from(owner, world: World):
    upstream = [{"provider": "openai", "base_url": world.upstream.base_url, "model": "x", "region": "eu"}]
    world.add_model("gpt-4o-mini", upstream)  # genai-prices knows it: $0.15 / $0.60
    world.add_model("house-model-xyz", upstream, model_tier="premium")  # nobody knows it
    page = text(owner.get("/models"))
    source, row = listed(page, "gpt-test")
    assert source == "configured" and "$0.15" in row and "$0.6" in row and ">us<" in row
    source, row = listed(page, "gpt-4o-mini")
    assert source == "genai-prices" and "$0.15" in row and "$0.6" in row and ">eu<" in row
    source, row = listed(page, "house-model-xyz")
    assert source == "unpriced" and "unpriced" in row and "premium" in row
    assert 'class="num">$' not in row  # no price shown


def test_create_a_model_add_a_deployment_and_the_proxy_charges_its_price(owner, world: World, app):
    version = catalog_state()[1]
    made = form_post(
        owner,
        "/models",
        {"name": "team/house", "model_tier": "standard", "input_per_mtok": "2", "output_per_mtok": "4"},
        "/models",
    )
    house = model_id("team/house")
    assert made.status_code == 302 and made.headers["Location"] == f"/models/{house}"
    assert catalog_state()[1] > version  # the stamp moved: every worker reloads
    added = form_post(
        owner,
        f"/models/{house}/deployments",
        new_deployment(world.upstream.base_url, api_key="sk-house-secret"),
        f"/models/{house}",
    )
    assert added.status_code == 302
    refresh(app)
    reply = chat(world.url, world.key, "acme", model="team/house")
    assert reply.status_code == 200, reply.text
    assert world.upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-house-secret"
    [record] = world.usage_records("acme")
    expected = Price(2_000_000_000, 4_000_000_000, "config").cost_nusd(
        record.prompt_tokens, record.completion_tokens
    )
    assert record.cost_nusd == expected > 0

    saved = form_post(
        owner,
        f"/models/{house}",
        {"model_tier": "premium", "input_per_mtok": "0.5", "output_per_mtok": "1.25"},
        f"/models/{house}",
    )
    assert saved.status_code == 302
    page = text(owner.get(f"/models/{house}"))
    assert 'value="0.50"' in page and 'value="1.25"' in page and "(configured)" in page
    refresh(app)
    assert chat(world.url, world.key, "acme", model="team/house").status_code == 200
    second = world.usage_records("acme")[-1]
    assert second.model_tier == "premium"
    assert second.cost_nusd == Price(500_000_000, 1_250_000_000, "config").cost_nusd(
        second.prompt_tokens, second.completion_tokens
    )

    # Both prices empty: genai-prices' price, and this name has none, so the model is unpriced.
    form_post(owner, f"/models/{house}", {"model_tier": "premium"}, f"/models/{house}")
    assert listed(text(owner.get("/models")), "team/house")[0] == "unpriced"
    refresh(app)
    assert chat(world.url, world.key, "acme", model="team/house").status_code == 200
    assert world.usage_records("acme")[-1].cost_nusd == 0


@pytest.mark.parametrize(
    ("prices", "field", "message"),
    [
        ({"input_per_mtok": "abc", "output_per_mtok": "1"}, "input_per_mtok", "not a money amount"),
        ({"input_per_mtok": "-1", "output_per_mtok": "1"}, "input_per_mtok", "not negative"),
        ({"input_per_mtok": "1", "output_per_mtok": "1.2.3"}, "output_per_mtok", "not a money amount"),
        ({"input_per_mtok": "0.0000000001", "output_per_mtok": "1"}, "input_per_mtok", "9 decimals"),
        ({"input_per_mtok": "1", "output_per_mtok": ""}, "output_per_mtok", "Give both prices"),
    ],
)
def test_malformed_prices_are_shown_next_to_the_field_and_change_nothing(
    owner, world: World, prices, field, message
):
    test_model = model_id("gpt-test")
    before = catalog_state()
    edit = form_post(
        owner, f"/models/{test_model}", {"model_tier": "premium", **prices}, f"/models/{test_model}"
    )
    assert edit.status_code == 400
    assert message in (error_next_to(text(edit), field) or "")
    assert 'value="premium" selected' in text(edit) or 'selected value="premium"' in text(edit)  # input kept
    create = form_post(owner, "/models", {"name": "fresh", "model_tier": "standard", **prices}, "/models")
    assert create.status_code == 400 and message in (error_next_to(text(create), field) or "")
    assert catalog_state() == before


def test_other_bad_input_is_shown_next_to_the_field_and_changes_nothing(owner, world: World):
    test_model = model_id("gpt-test")
    [stored] = deployments_of("gpt-test")
    before = catalog_state()
    page = f"/models/{test_model}"
    cases = [
        ("/models", {"name": "", "model_tier": "standard"}, "/models", "name", "Model name is required"),
        ("/models", {"name": "gpt-test", "model_tier": "standard"}, "/models", "name", "already exists"),
        ("/models", {"name": "x", "model_tier": "gold"}, "/models", "model_tier", "Not a valid choice"),
        (f"{page}/deployments", new_deployment("not a url"), page, "new-base_url", "http(s) URL"),
        (f"{page}/deployments", new_deployment("ftp://host/v1"), page, "new-base_url", "http(s) URL"),
        (
            f"{page}/deployments",
            new_deployment(world.upstream.base_url, region="us east"),
            page,
            "new-region",
            "Region must be a short name",
        ),
        (
            f"{page}/deployments",
            new_deployment(world.upstream.base_url, region=""),
            page,
            "new-region",
            "Region must be a short name",
        ),
        (
            f"{page}/deployments",
            new_deployment(world.upstream.base_url, weight="abc"),
            page,
            "new-weight",
            "integer",
        ),
        (
            f"{page}/deployments",
            new_deployment(world.upstream.base_url, model=""),
            page,
            "new-model",
            "required",
        ),
        (
            f"{page}/deployments/{stored.id}",
            deployment_form(stored, base_url="http://"),
            page,
            f"d{stored.id}-base_url",
            "http(s) URL",
        ),
        (
            f"{page}/deployments/{stored.id}",
            deployment_form(stored, timeout_s="0"),
            page,
            f"d{stored.id}-timeout_s",
            "Timeout (seconds) must be a whole number from 1",  # the label, not the API's name
        ),
        (
            f"{page}/deployments/{stored.id}",
            deployment_form(stored, region="e,u", api_key="sk-typed-then-refused"),
            page,
            f"d{stored.id}-region",
            "Region must be a short name",
        ),
    ]
    for path, data, on_page, field, message in cases:
        resp = form_post(owner, path, data, on_page)
        assert resp.status_code == 400, (path, data)
        assert message in (error_next_to(text(resp), field) or ""), (field, text(resp)[-3000:])
        assert "sk-typed-then-refused" not in text(resp)  # a typed key is not echoed back either
    assert catalog_state() == before


def test_the_stored_secret_is_write_only(owner, world: World, app):
    test_model = model_id("gpt-test")
    [stored] = deployments_of("gpt-test")
    sealed = stored.api_key
    pages = [owner.get("/models"), owner.get(f"/models/{test_model}")]
    pages.append(
        form_post(
            owner,
            f"/models/{test_model}/deployments/{stored.id}",
            deployment_form(stored, region="e u"),
            f"/models/{test_model}",
        )
    )
    pages.append(
        form_post(owner, f"/models/{test_model}/deployments/{stored.id}/test", {}, f"/models/{test_model}")
    )
    assert [p.status_code for p in pages] == [200, 200, 400, 200]
    for page in pages:
        assert "sk-upstream" not in text(page) and sealed not in text(page)
    assert "key stored" in text(pages[1])

    # An empty key field keeps the stored key.
    kept = form_post(
        owner,
        f"/models/{test_model}/deployments/{stored.id}",
        deployment_form(stored, weight="3"),
        f"/models/{test_model}",
    )
    assert kept.status_code == 302
    [stored] = deployments_of("gpt-test")
    assert stored.weight == 3 and unseal(world.secret_key, stored.api_key) == "sk-upstream"
    refresh(app)
    assert chat(world.url, world.key, "acme").status_code == 200
    assert world.upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-upstream"

    # A new key replaces it, and is not shown either.
    form_post(
        owner,
        f"/models/{test_model}/deployments/{stored.id}",
        deployment_form(stored, api_key="sk-rotated"),
        f"/models/{test_model}",
    )
    assert "sk-rotated" not in text(owner.get(f"/models/{test_model}"))
    refresh(app)
    assert chat(world.url, world.key, "acme").status_code == 200
    assert world.upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-rotated"

    # Typing a key and ticking "remove" at once is refused; ticking "remove" alone removes it.
    [stored] = deployments_of("gpt-test")
    both = deployment_form(stored, api_key="sk-other", remove_api_key="y")
    refused = form_post(owner, f"/models/{test_model}/deployments/{stored.id}", both, f"/models/{test_model}")
    assert refused.status_code == 400
    assert "not both" in (error_next_to(text(refused), f"d{stored.id}-remove_api_key") or "")
    removed = form_post(
        owner,
        f"/models/{test_model}/deployments/{stored.id}",
        deployment_form(stored, remove_api_key="y"),
        f"/models/{test_model}",
    )
    assert removed.status_code == 302
    assert deployments_of("gpt-test")[0].api_key is None
    refresh(app)
    assert chat(world.url, world.key, "acme").status_code == 200
    assert "authorization" not in world.upstream.requests[-1]["headers"]


def test_the_test_button_makes_one_real_call_and_charges_nobody(owner, world: World):
    test_model = model_id("gpt-test")
    [stored] = deployments_of("gpt-test")
    before = len(world.upstream.requests)
    resp = form_post(owner, f"/models/{test_model}/deployments/{stored.id}/test", {}, f"/models/{test_model}")
    assert resp.status_code == 200
    assert len(world.upstream.requests) == before + 1
    seen = world.upstream.requests[-1]
    assert seen["path"] == "/v1/chat/completions" and seen["headers"]["authorization"] == "Bearer sk-upstream"
    assert seen["json"]["model"] == "fake-model" and seen["json"]["max_tokens"] == 1
    result = re.search(r'<tr class="probe ok" role="status">(.*?)</tr>', text(resp), re.S)
    assert result, text(resp)[-2000:]
    assert "Test passed" in result.group(1) and "status 200" in result.group(1)
    assert re.search(r"\d+ ms", result.group(1)) and "tok0" in result.group(1)  # the fake's one-token reply
    assert world.count(UsageRecord) == 0  # nobody charged, nothing recorded

    world.upstream.fail_status = 500
    failed = form_post(
        owner, f"/models/{test_model}/deployments/{stored.id}/test", {}, f"/models/{test_model}"
    )
    result = re.search(r'<tr class="probe failed" role="status">(.*?)</tr>', text(failed), re.S)
    assert result and "status 500" in result.group(1) and "fake failure" in result.group(1)
    assert world.count(UsageRecord) == 0


def test_the_test_button_calls_an_anthropic_deployment_in_its_own_api(owner, world: World):
    world.add_model(
        "claude-test",
        [
            {
                "provider": "anthropic",
                "base_url": world.upstream.root_url,
                "model": "claude-fake",
                "api_key": "sk-ant",
            }
        ],
    )
    [stored] = deployments_of("claude-test")
    page = f"/models/{model_id('claude-test')}"
    resp = form_post(owner, f"{page}/deployments/{stored.id}/test", {}, page)
    seen = world.upstream.requests[-1]
    assert seen["path"] == "/v1/messages" and seen["headers"]["x-api-key"] == "sk-ant"
    assert seen["headers"]["anthropic-version"] == "2023-06-01" and seen["json"]["max_tokens"] == 1
    result = re.search(r'<tr class="probe ok" role="status">(.*?)</tr>', text(resp), re.S)
    assert result and "status 200" in result.group(1) and "tok0" in result.group(1)  # the message's text
    assert world.count(UsageRecord) == 0


def test_the_test_button_shows_why_a_deployment_fails(owner, world: World):
    world.add_model(
        "gpt-down",
        [
            {"provider": "openai", "base_url": refusing_url(), "model": "m", "region": "us"},
            {"provider": "mock", "model": "mock", "region": "us"},
        ],
    )
    down, mock = deployments_of("gpt-down")
    page = f"/models/{model_id('gpt-down')}"
    resp = form_post(owner, f"{page}/deployments/{down.id}/test", {}, page)
    assert resp.status_code == 200
    result = re.search(r'<tr class="probe failed" role="status">(.*?)</tr>', text(resp), re.S)
    assert result and "cannot connect" in result.group(1) and "none (no answer)" in result.group(1)
    assert world.upstream.requests == []
    assert f'id="deployment-{down.id}"' in text(resp)
    served = form_post(owner, f"{page}/deployments/{mock.id}/test", {}, page)
    result = re.search(r'<tr class="probe ok" role="status">(.*?)</tr>', text(served), re.S)
    assert result and "Hello" in result.group(1)  # the mock model's first word


def defaults_page(owner) -> str:
    return text(owner.get("/models"))


def selected(page: str, field: str) -> str | None:
    select_html = re.search(rf'<select[^>]*id="{field}"[^>]*>(.*?)</select>', page, re.S).group(1)
    chosen = re.search(r'<option (?:selected value="([^"]*)"|value="([^"]*)" selected)', select_html)
    return (chosen.group(1) or chosen.group(2)) if chosen else None


def test_the_default_model_per_model_tier_is_what_restrict_serves(owner, world: World, app):
    world.add_model(
        "gpt-premium",
        [{"provider": "openai", "base_url": world.upstream.base_url, "model": "big"}],
        model_tier="premium",
    )
    choices = {"standard": "gpt-test", "premium": "", "super_premium": "", "reasoning": ""}
    before = catalog_state()
    bad = form_post(owner, "/models/tier-defaults", {**choices, "premium": "no-such-model"}, "/models")
    assert bad.status_code == 400 and "Not a valid choice" in (error_next_to(text(bad), "premium") or "")
    assert catalog_state() == before
    assert selected(defaults_page(owner), "standard") is None

    assert form_post(owner, "/models/tier-defaults", choices, "/models").status_code == 302
    assert selected(defaults_page(owner), "standard") == "gpt-test"
    tier = world.add_tier(
        {
            "key": "rst",
            "on_limit": "restrict",
            "restrict_to": "standard",
            "limits": {"premium": {"calls": 1, "tokens": None}},
        }
    )
    world.give_customer("r1", 1_000_000)
    assign(world, "r1", tier)
    refresh(app)
    assert chat(world.url, world.key, "r1", model="gpt-premium").headers["x-tollgate-model"] == "gpt-premium"
    moved = chat(world.url, world.key, "r1", model="gpt-premium")
    assert moved.status_code == 200 and moved.headers["x-tollgate-model"] == "gpt-test"
    assert moved.headers["x-tollgate-restricted"] == "premium->standard"

    # Cleared: the premium limit is full and there is nothing to restrict to.
    assert (
        form_post(owner, "/models/tier-defaults", {**choices, "standard": ""}, "/models").status_code == 302
    )
    assert selected(defaults_page(owner), "standard") is None
    refresh(app)
    blocked = chat(world.url, world.key, "r1", model="gpt-premium")
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "usage_limit_reached"


def test_remove_a_deployment_then_delete_the_model(owner, world: World, app):
    world.add_model(
        "gpt-two",
        [
            {"provider": "openai", "base_url": world.upstream.base_url, "model": "a", "region": "us"},
            {"provider": "mock", "model": "mock", "region": "eu"},
        ],
    )
    page = f"/models/{model_id('gpt-two')}"
    first, second = deployments_of("gpt-two")
    assert form_post(owner, f"{page}/deployments/{first.id}/remove", {}, page).status_code == 302
    assert [d.id for d in deployments_of("gpt-two")] == [second.id]
    none = {"premium": "", "super_premium": "", "reasoning": ""}
    assert (
        form_post(owner, "/models/tier-defaults", {"standard": "gpt-two", **none}, "/models").status_code
        == 302
    )
    before = catalog_state()
    unconfirmed = form_post(owner, f"{page}/delete", {}, page)
    assert unconfirmed.status_code == 400 and "Tick the box" in (
        error_next_to(text(unconfirmed), "confirm") or ""
    )
    assert catalog_state() == before
    assert form_post(owner, f"{page}/delete", {"confirm": "y"}, page).status_code == 302
    assert model_id("gpt-two") is None and deployments_of("gpt-two") == []
    assert db.session.scalar(select(ModelTierDefault.id)) is None
    assert owner.get(page).status_code == 404
    refresh(app)
    gone = chat(world.url, world.key, "acme", model="gpt-two")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"


def test_a_viewer_reads_but_cannot_change(app, owner, world: World):
    add_admin("viewer@example.com", PASSWORD, role="viewer")
    db.session.commit()
    viewer = client_for(app)
    sign_in(viewer, email="viewer@example.com")
    test_model = model_id("gpt-test")
    assert viewer.get(f"/models/{test_model}").status_code == 200
    before = catalog_state()
    refused = form_post(
        viewer,
        f"/models/{test_model}",
        {"model_tier": "reasoning", "input_per_mtok": "9", "output_per_mtok": "9"},
        f"/models/{test_model}",
    )
    assert refused.status_code == 403 and catalog_state() == before
