"""`flask --app wsgi …` commands (SPEC 2)."""

from __future__ import annotations

import json
import os
import secrets
import sys

import click
from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import func, select

from app import configfile
from app.admins import operations as admins
from app.catalog.operations import set_tier_default, upsert_model
from app.errors import DomainError, Invalid
from app.extensions import db
from app.keys.operations import create_key
from app.metering import audit
from app.models.admin_user import AdminUser
from app.models.api_key import ApiKey
from app.projects.operations import create_project, find_project

DEMO_MODEL = "demo"
DEMO_INITIAL_TOKENS = 10_000


def register(app: Flask) -> None:
    app.cli.add_command(setup)
    app.cli.add_command(admin)
    app.cli.add_command(keys)
    app.cli.add_command(config)
    app.cli.add_command(ledger)
    app.cli.add_command(scheduler)


def _settings():
    return current_app.config["TOLLGATE"]


def _fail(exc: DomainError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    db.session.rollback()
    sys.exit(2)


def add_admin(email: str, password: str, role: str = "owner") -> AdminUser:
    return admins.add_admin(db.session, email, password, role)


@click.command("setup")
def setup() -> None:
    """Migrate, apply TOLLGATE_CONFIG, create the default project; print logins the first time."""
    upgrade(directory=current_app.extensions["migrate"].directory)
    settings = _settings()
    try:
        if settings.config_file:
            for line in configfile.apply(
                db.session, configfile.read(settings.config_file), settings.secret_key
            ):
                click.echo(f"config: {line}")
        _ensure_default_project(settings.secret_key)
        login = _ensure_admin(settings)
        key = _ensure_first_key()
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    if login:
        click.echo(f"Admin login: {login[0]} / {login[1]}  (shown once; change it after signing in)")
    if key:
        click.echo(f"Proxy key for project 'default': {key}  (shown once; store it now)")
        click.echo("Try it from another terminal, pasting these two lines:")
        click.echo(try_it(key, settings.bind))


def try_it(key: str, bind: str) -> str:
    """The README's quickstart call, ready to paste: the key exported (shell-quoted), then curl using it."""
    body = json.dumps(
        {"model": DEMO_MODEL, "user": "acme", "messages": [{"role": "user", "content": "Hello"}]}
    )
    return (
        f"export TOLLGATE_KEY={_quoted(key)}\n"
        f'curl -s http://{bind}/v1/chat/completions -H "Authorization: Bearer $TOLLGATE_KEY" '
        f"-H 'Content-Type: application/json' -d {_quoted(body)}"
    )


def _quoted(text: str) -> str:
    """POSIX shell single quotes, always (shlex.quote leaves a key bare), a quote inside spelled '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"


def _ensure_default_project(secret_key: str) -> None:
    if find_project(db.session, "default") is not None:
        return
    project = create_project(
        db.session, "default", "Default", new_customer_initial_tokens=DEMO_INITIAL_TOKENS
    )
    upsert_model(
        db.session,
        project,
        {
            "name": DEMO_MODEL,
            "model_tier": "standard",
            "price": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"},
            "deployments": [{"provider": "mock", "model": "mock", "region": "us"}],
        },
        secret_key,
    )
    set_tier_default(db.session, project, "standard", DEMO_MODEL)


def _ensure_admin(settings) -> tuple[str, str] | None:
    if db.session.scalar(select(func.count()).select_from(AdminUser)):
        return None
    if settings.admin_email and settings.admin_password:
        add_admin(settings.admin_email, settings.admin_password)
        return None
    password = secrets.token_urlsafe(12)
    add_admin("admin@localhost", password)
    return "admin@localhost", password


def _ensure_first_key() -> str | None:
    project = find_project(db.session, "default")
    if project is None or db.session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.project_id == project.id)
    ):
        return None
    _, raw = create_key(db.session, project, "quickstart", "proxy")
    return raw


@click.group()
def admin() -> None:
    """Admin users of the web admin."""


@admin.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--role", default="owner", show_default=True)
def admin_create(email: str, password: str, role: str) -> None:
    """Create a web-admin user (owner or viewer)."""
    try:
        user = add_admin(email, password, role)
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    click.echo(f"created admin {user.email} ({user.role})")


@admin.command("password")
@click.option("--email", required=True)
@click.option("--password", required=True)
def admin_password(email: str, password: str) -> None:
    """Set an admin's password (for an admin who cannot sign in to change it)."""
    from app.admins.operations import find_by_email, set_password

    try:
        set_password(db.session, find_by_email(db.session, email), password)
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    click.echo(f"password set for {email.strip().lower()}")


@click.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--project", "slug", default="default", show_default=True)
@click.option("--name", required=True)
@click.option("--scope", default="proxy", show_default=True, type=click.Choice(["proxy", "admin"]))
def keys_create(slug: str, name: str, scope: str) -> None:
    """Create a key and print it once."""
    project = find_project(db.session, slug)
    if project is None:
        _fail(Invalid(f"no project {slug!r}", "project"))
        return
    try:
        _, raw = create_key(db.session, project, name, scope)
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    click.echo(raw)


@click.group()
def config() -> None:
    """The YAML config file."""


@config.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def config_apply(path: str) -> None:
    """Apply a config file (SPEC 9): models are upserted, the rest created when missing."""
    try:
        done = configfile.apply(db.session, configfile.read(path), _settings().secret_key, os.environ)
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    for line in done:
        click.echo(line)
    click.echo("config applied")


@click.group()
def ledger() -> None:
    """The token ledger."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Check the SPEC 11 invariants; exit 1 on any breach."""
    with db.engine.connect() as conn:
        breaches = audit.verify(conn)
    for b in breaches:
        click.echo(f"BREACH project={b.project_id} customer={b.customer_id}: {b.what}", err=True)
    if breaches:
        sys.exit(1)
    click.echo("ledger ok: every balance equals its ledger entries minus metered usage")


@click.group()
def scheduler() -> None:
    """The background jobs."""


@scheduler.command("run")
@click.option("--once", is_flag=True, help="Run one tick and exit (cron-style).")
def scheduler_run(once: bool) -> None:
    """Run the scheduler in this process; only the holder of the leader lease runs jobs. Webhook
    deliveries are sent from here too."""
    from app.events.delivery import Dispatcher, delivery_timeout
    from app.scheduler import Scheduler

    dispatcher = Dispatcher(db.engine, current_app.config["SECRET_KEY"], webhook_url=_settings().webhook_url)
    runner = Scheduler(db.engine, dispatcher=dispatcher)
    if once:
        click.echo(", ".join(runner.tick()) or "not the leader: nothing run")
        sent = dispatcher.tick()
        dispatcher.idle(delivery_timeout())  # cron-style: this run's deliveries are attempted before exit
        click.echo(f"{sent} webhook deliveries attempted")
        return
    click.echo(f"scheduler {runner.holder} running")
    runner.serve()
