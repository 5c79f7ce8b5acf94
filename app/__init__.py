"""Tollgate: an LLM gateway that meters, budgets and limits usage per customer of your app."""

from __future__ import annotations

import sys

from flask import Flask, Response, jsonify, redirect, request, url_for
from sqlalchemy import event
from werkzeug.routing import IntegerConverter

from app import config, error_pages, form_errors, formatting
from app.db import MAX_ROW_ID, row_id
from app.extensions import csrf, db, login_manager, migrate
from app.web_session import PROXY_PATHS, STRIPE_WEBHOOKS, AdminOnlySessions


def create_app(settings: config.Settings | None = None) -> Flask:
    settings = settings or config.load()
    app = Flask(
        __name__,
        template_folder=str(config.ROOT / "templates"),
        static_folder=str(config.ROOT / "static"),
        instance_path=str(settings.instance_path),
    )
    app.config.update(settings.flask_config())
    app.session_interface = AdminOnlySessions()
    _init_extensions(app)
    _register_blueprints(app)
    _register_errors(app)
    app.after_request(_refuse_framing)
    formatting.register(app)
    form_errors.register(app)
    from app import cli

    cli.register(app)
    with app.app_context():
        _init_gateway(app, settings)
    from app.proxy.entry import Entry

    app.wsgi_app = Entry(app)  # type: ignore[method-assign]  # the proxy's calls skip Flask
    return app


def _init_extensions(app: Flask) -> None:
    from app.auth.operations import Throttle

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config.ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "Sign in to continue."
    login_manager.user_loader(_load_admin)
    # Redis when configured, else the database (the sign-in view passes its session).
    app.extensions["tollgate.signin_throttle"] = Throttle(app.config["TOLLGATE"].redis_url)


def _load_admin(identity: str):
    """The admin a session cookie names ("<id>:<session version>"), or None, and so
    the sign-in page, when the identity is malformed or from before a sign-out or password change."""
    from app.models import AdminUser

    user_id = row_id(identity.partition(":")[0]) if identity.isascii() else None
    user = db.session.get(AdminUser, user_id) if user_id is not None else None
    return user if user is not None and user.has_identity(identity) else None


class RowId(IntegerConverter):
    """A row id in an admin URL: past the id columns' range there is no such row (404), and the
    database never sees a number it cannot hold."""

    def __init__(self, url_map) -> None:
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


def _register_blueprints(app: Flask) -> None:
    app.url_map.converters["id"] = RowId
    from app import api, auth, monitoring
    from app.admins import views as admin_views
    from app.catalog import views as catalog_views
    from app.customers import views as customer_views
    from app.dashboard import views as dashboard_views
    from app.integrations import stripe_webhook
    from app.integrations import views as integration_views
    from app.keys import views as key_views
    from app.portal import views as portal_views
    from app.projects import views as project_views
    from app.projects.current import project_field
    from app.proxy import views as proxy_views
    from app.resubmission import once_field
    from app.settings import views as settings_views
    from app.tiers import views as tier_views

    # Hidden inputs of the admin's forms; globals, so the form macros reach them too.
    app.add_template_global(project_field)
    app.add_template_global(once_field)
    app.register_blueprint(auth.bp)
    app.register_blueprint(dashboard_views.bp)
    app.register_blueprint(customer_views.bp)
    app.register_blueprint(key_views.bp)
    app.register_blueprint(settings_views.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(tier_views.bp)
    app.register_blueprint(catalog_views.bp)
    app.register_blueprint(project_views.bp)
    app.register_blueprint(integration_views.bp)
    app.register_blueprint(stripe_webhook.bp)
    app.register_blueprint(portal_views.bp)
    app.add_url_rule("/", "root", lambda: redirect(url_for("dashboard.index")))
    # Browsers and bookmark tools ask for /favicon.ico whatever the pages link: the same icon.
    app.add_url_rule("/favicon.ico", "favicon", lambda: app.send_static_file("favicon.svg"))

    app.register_blueprint(proxy_views.bp)  # GET /v1/models; the calls are app.proxy.entry's
    csrf.exempt(proxy_views.bp)
    app.before_request(_models_for_keys)
    app.register_blueprint(monitoring.bp)
    api.init(app)


def _models_for_keys() -> Response | None:
    """GET /models is LiteLLM's model list for a caller with a key (SPEC 3), and the admin's models
    page for a browser, which never sends one."""
    if request.path != "/models" or request.method != "GET":
        return None
    from app.proxy import views as proxy_views
    from app.proxy.gateway import presented_key

    return proxy_views.models() if presented_key(request.headers) else None


def _refuse_nul() -> Response | tuple[Response | str, int] | None:
    """No admin input may hold a NUL character: PostgreSQL text cannot store one (400, not 500)."""
    if not error_pages.for_browser():
        return None  # the proxy and the API check their own bodies
    values = [*request.args.values(), *(request.form.values() if request.method == "POST" else ())]
    if any("\x00" in value for value in values):
        return error_pages.page(400, "Text may not contain NUL characters.")
    return None


def _refuse_framing(response: Response) -> Response:
    """No admin page may be framed by another site (clickjacking, SPEC 10), errors and redirects
    included; the machine paths skip the headers, and the customer usage page sets its own (the
    project lists who may frame it)."""
    if error_pages.for_browser() and request.blueprint != "portal":
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response


def _register_errors(app: Flask) -> None:
    from app.api.errors import ApiError
    from app.proxy.errors import ProxyError, response_for

    app.before_request(_refuse_nul)

    # HTTP errors (404, 405, 413, validation) are answered by app.api.TollgateApi, per surface.

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response | str, int]:
        app.logger.exception("unhandled error on %s", request.path)
        if request.path.startswith((*PROXY_PATHS, "/api/")):
            err = ProxyError("internal_error", "Internal error; the request was not charged.")
            return response_for(request.path, err), 500
        if request.path.startswith(STRIPE_WEBHOOKS):  # nothing was recorded: Stripe will retry
            return ApiError(500, "Internal error; the event was not processed.").response(), 500
        if error_pages.for_browser():
            return error_pages.page(500)
        return jsonify(error="internal error"), 500


def _init_gateway(app: Flask, settings: config.Settings) -> None:
    from app.proxy.auth import SnapshotCache
    from app.proxy.gateway import Gateway
    from app.proxy.health import Health
    from app.proxy.keyuse import KeyUse
    from app.proxy.levels import LevelWatch
    from app.proxy.ratelimit import Limiter
    from app.proxy.refusals import RefusalCounter
    from app.upstream.client import Client

    engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _refuse_blocking_psycopg()
    app.extensions["tollgate.gateway"] = Gateway(
        engine=engine,
        cache=SnapshotCache(
            engine, settings.secret_key, settings.master_key, webhook_url=settings.webhook_url
        ),
        client=Client(),
        health=Health(settings.redis_url),
        limiter=Limiter(settings.redis_url),
        key_use=KeyUse(engine),
        refusals=RefusalCounter(engine),
        levels=LevelWatch(engine),
    )


def _refuse_blocking_psycopg() -> None:
    """Under gevent, psycopg must wait cooperatively, or one slow statement stalls the worker.

    psycopg picks its wait function at import: the C one if gevent had not patched `select` yet
    (gunicorn --preload, or an import of the app in gunicorn.conf.py).
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return
    import psycopg.waiting

    if psycopg.waiting.wait is getattr(psycopg.waiting, "wait_c", None):
        raise config.ConfigError(
            "psycopg was imported before gevent patched the process (gunicorn --preload?): "
            "PostgreSQL waits would block every request in the worker"
        )


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers run beside the writer; NORMAL sync is durable across process crashes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
