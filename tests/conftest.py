"""Test fixtures: one migrated database and app per session, a live gateway on loopback, a fake
OpenAI upstream, and a clean database for every test.

TOLLGATE_TEST_DATABASE_URL picks the database (PostgreSQL in CI's second pass); else SQLite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from app import config, create_app
from app.extensions import db
from tests.factories import World
from tests.fakes.upstream import FakeUpstream

MASTER_KEY = "tg-master-key-for-tests-0123456789"


def _database_url(tmp: Path) -> str:
    url = os.environ.get("TOLLGATE_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'test.db'}"
    url = config._normalise_db_url(url)
    # The suite owns this database: start from an empty schema every session.
    if not url.rsplit("/", 1)[-1].split("?")[0].endswith("test"):
        raise RuntimeError("TOLLGATE_TEST_DATABASE_URL must name a database whose name ends in 'test'")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="session")
def app(instance_dir: Path) -> Iterator[Flask]:
    settings = config.load(
        env={
            "TOLLGATE_INSTANCE_PATH": str(instance_dir),
            "TOLLGATE_DATABASE_URL": _database_url(instance_dir),
            "TOLLGATE_SECRET_KEY": "s" * 48,
            "TOLLGATE_MASTER_KEY": MASTER_KEY,
            "TOLLGATE_MAX_BODY_MB": "8",
        }
    )
    application = create_app(settings)
    application.config["TESTING"] = True
    with application.app_context():
        upgrade(directory=application.extensions["migrate"].directory)
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def live_url(app: Flask) -> Iterator[str]:
    """The app served over real HTTP by a threaded server, as the SDK and curl see it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


KEEP = {"config_stamp", "alembic_version"}


@pytest.fixture(autouse=True)
def clean_db(app: Flask, upstream: FakeUpstream) -> Iterator[None]:
    upstream.reset()
    yield
    with app.app_context():
        tables = [t for t in reversed(db.metadata.sorted_tables) if t.name not in KEEP]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("TRUNCATE " + ", ".join(t.name for t in tables) + " RESTART IDENTITY CASCADE")
                )
            else:
                conn.execute(text("UPDATE projects SET default_tier_id = NULL"))
                for table in tables:
                    conn.execute(table.delete())
        app.extensions["tollgate.gateway"].cache.invalidate()
        app.extensions["tollgate.gateway"].breakers._state.clear()


@pytest.fixture
def world(app: Flask, upstream: FakeUpstream, live_url: str) -> Iterator[World]:
    """A project `default` with a proxy key and model `gpt-test` served by the fake upstream."""
    with app.app_context():
        w = World(app, upstream, live_url)
        w.setup_default()
        yield w
