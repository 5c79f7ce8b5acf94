"""The CLI of SPEC 2: admin create and password, keys create, config apply, ledger verify."""

from __future__ import annotations

import subprocess
import textwrap

from sqlalchemy import select, update

from app.cli import try_it
from app.crypto import unseal
from app.extensions import db
from app.models import AdminUser, ApiKey, Customer, Deployment, Model, UsageTier
from app.models.api_key import hash_key
from app.projects.operations import find_project
from tests.factories import World


def run(app, *args, env=None):
    return app.test_cli_runner().invoke(args=list(args), env=env)


def test_admin_create_hashes_password_and_refuses_duplicates(app, world: World):
    result = run(app, "admin", "create", "--email", "Ops@Example.com", "--password", "correct horse")
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(AdminUser).where(AdminUser.email == "ops@example.com"))
    assert user.role == "owner" and "correct horse" not in user.password_hash
    again = run(app, "admin", "create", "--email", "ops@example.com", "--password", "another one")
    assert again.exit_code == 2 and "already exists" in again.output
    short = run(app, "admin", "create", "--email", "x@y.z", "--password", "short")
    assert short.exit_code == 2 and "at least 8" in short.output


def test_admin_password_resets_a_locked_out_admin(app, world: World):
    from app.auth.operations import authenticate

    run(app, "admin", "create", "--email", "ops@example.com", "--password", "correct horse")
    result = run(app, "admin", "password", "--email", "OPS@example.com", "--password", "battery staple")
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert authenticate(db.session, "ops@example.com", "battery staple") is not None
    assert authenticate(db.session, "ops@example.com", "correct horse") is None
    missing = run(app, "admin", "password", "--email", "nobody@example.com", "--password", "battery staple")
    assert missing.exit_code == 2 and "no admin" in missing.output
    short = run(app, "admin", "password", "--email", "ops@example.com", "--password", "short")
    assert short.exit_code == 2 and "at least 8" in short.output


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(app, world: World):
    result = run(app, "keys", "create", "--project", "default", "--name", "backend", "--scope", "admin")
    assert result.exit_code == 0, result.output
    raw = result.output.strip()
    assert raw.startswith("tg-") and len(raw) == 43
    key = db.session.scalar(select(ApiKey).where(ApiKey.name == "backend"))
    assert key.key_hash == hash_key(raw) and key.scope == "admin" and raw not in key.prefix * 2
    missing = run(app, "keys", "create", "--project", "nope", "--name", "x")
    assert missing.exit_code == 2 and "no project" in missing.output


def test_config_apply_upserts_models_and_creates_the_rest_once(app, world: World, tmp_path):
    path = tmp_path / "tollgate.yaml"
    path.write_text(
        textwrap.dedent("""
        projects:
          - slug: shop
            name: Shop
            settings: {new_customer_initial_tokens: 50000, default_tier: pro, low_balance_tokens: 5000}
            models:
              - name: gpt-4o-mini
                model_tier: standard
                price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
                deployments:
                  - {provider: openai, base_url: "http://127.0.0.1:9/v1", api_key: "env:UP_KEY", model: m1,
                     region: eu}
            model_tier_defaults: {standard: gpt-4o-mini}
            tiers:
              - {key: pro, name: Pro, period: month, replenish_tokens: 1000000, max_budget_usd: 50,
                 limits: {premium: {calls: 500, tokens: 2000000}}, on_limit: restrict, restrict_to: standard}
            api_keys:
              - {name: backend, scope: proxy, key: "env:APP_KEY"}
            stripe: {webhook_secret: "env:WHSEC", api_key: "env:STRIPE_KEY",
                     prices: {price_pack: {tokens: 100000}, price_pro: {tokens: 1000000, tier: pro}}}
    """)
    )
    env = {
        "UP_KEY": "sk-secret-upstream",
        "APP_KEY": "tg-app-key-from-env-0001",
        "WHSEC": "whsec_from_the_env_123",
        "STRIPE_KEY": "rk_test_from_the_env_456",
    }
    result = run(app, "config", "apply", str(path), env=env)
    assert result.exit_code == 0, result.output
    shop = find_project(db.session, "shop")
    assert shop.new_customer_initial_tokens == 50000 and shop.low_balance_tokens == 5000
    pro = db.session.scalar(select(UsageTier).where(UsageTier.project_id == shop.id, UsageTier.key == "pro"))
    assert shop.default_tier_id == pro.id and pro.max_budget_nusd == 50 * 10**9
    assert pro.limits == {"premium": {"calls": 500, "tokens": 2_000_000}}
    dep = db.session.scalar(select(Deployment).join(Model).where(Model.project_id == shop.id))
    assert dep.api_key.startswith("fernet:") and "sk-secret" not in dep.api_key
    assert db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(env["APP_KEY"]))) is not None
    assert shop.stripe_prices == {
        "price_pack": {"tokens": 100000},
        "price_pro": {"tokens": 1000000, "tier": "pro"},
    }
    assert unseal(world.secret_key, shop.stripe_webhook_secret) == "whsec_from_the_env_123"
    assert unseal(world.secret_key, shop.stripe_api_key) == "rk_test_from_the_env_456"

    # Admin changes a setting; the file is applied again with a changed deployment: the model follows
    # the file, the setting stays the admin's, nothing is duplicated.
    shop.new_customer_initial_tokens = 7
    db.session.commit()
    path.write_text(path.read_text().replace("region: eu", "region: us"))
    assert run(app, "config", "apply", str(path), env=env).exit_code == 0
    db.session.expire_all()
    assert find_project(db.session, "shop").new_customer_initial_tokens == 7
    deps = db.session.scalars(select(Deployment).join(Model).where(Model.project_id == shop.id)).all()
    assert [d.region for d in deps] == ["us"]
    # Applied again unchanged, the deployment is the same row (its id keeps its health and records).
    assert run(app, "config", "apply", str(path), env=env).exit_code == 0
    db.session.expire_all()
    again = db.session.scalars(select(Deployment).join(Model).where(Model.project_id == shop.id)).all()
    assert [d.id for d in again] == [d.id for d in deps]
    assert len(db.session.scalars(select(ApiKey).where(ApiKey.project_id == shop.id)).all()) == 1


def test_config_apply_refuses_bad_files_and_changes_nothing(app, world: World, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "projects:\n  - slug: other\n    models:\n      - {name: m, price: {input_per_mtok: -1, "
        "output_per_mtok: 1}}\n"
    )
    result = run(app, "config", "apply", str(bad))
    assert result.exit_code == 2 and "price" in result.output
    assert find_project(db.session, "other") is None
    missing_env = tmp_path / "env.yaml"
    missing_env.write_text(
        "projects:\n  - slug: other\n    api_keys:\n      - {name: k, key: 'env:NOPE_NOT_SET'}\n"
    )
    result = run(app, "config", "apply", str(missing_env))
    assert result.exit_code == 2 and "NOPE_NOT_SET" in result.output
    assert find_project(db.session, "other") is None
    for stripe, complaint in (
        ("{prices: {price_x: {tier: gold}}}", "there is no tier 'gold'"),
        ("{prices: {price_x: {tokens: -5}}}", "tokens must be a whole number"),
        ("{prices: {price_x: {}}}", "give tokens (at least 1), a tier, or both"),
        ("{prices: {price_x: {tokens: 0}}}", "give tokens (at least 1), a tier, or both"),
        ("{webhook_secret: not-a-secret}", "webhook_secret: Stripe's begins with whsec_"),
        (
            "{secret: whsec_typo_of_the_field}",
            "stripe must be a mapping of webhook_secret, api_key and prices",
        ),
    ):
        bad.write_text(f"projects:\n  - slug: other\n    stripe: {stripe}\n")
        result = run(app, "config", "apply", str(bad))
        assert result.exit_code == 2 and complaint in result.output, (stripe, result.output)
        assert find_project(db.session, "other") is None


def test_ledger_verify_passes_then_catches_a_tampered_balance(app, world: World):
    world.give_customer("c1", 500)
    ok = run(app, "ledger", "verify")
    assert ok.exit_code == 0 and "ledger ok" in ok.output
    db.session.execute(update(Customer).where(Customer.external_id == "c1").values(token_balance=501))
    db.session.commit()
    bad = run(app, "ledger", "verify")
    assert bad.exit_code == 1 and "c1" in bad.output and "balance 501" in bad.output


def test_setup_prints_an_export_line_a_shell_reads_back_as_the_key():
    """The pasted export line sets exactly the key, whatever it holds (quotes, spaces, `$`), and the
    curl after it reads the variable, not a pasted copy of the key."""
    for key in ("tg-" + "Ab_-9" * 8, "tg-it's $HOME and `x`"):
        export, curl = try_it(key, "127.0.0.1:8000").splitlines()
        assert export.startswith("export TOLLGATE_KEY='")
        shell = subprocess.run(
            ["bash", "-c", f'{export}\nprintf %s "$TOLLGATE_KEY"'], capture_output=True, text=True, check=True
        )
        assert shell.stdout == key
        assert '"Authorization: Bearer $TOLLGATE_KEY"' in curl and key not in curl
