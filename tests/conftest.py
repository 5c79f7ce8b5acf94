"""Test fixtures: one migrated database and app per session, a live gateway on loopback, a fake
OpenAI upstream, and a clean database for every test.

TOLLGATE_TEST_DATABASE_URL picks the database (PostgreSQL in CI's second pass); else SQLite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from app import config, create_app
from app.extensions import db
from tests.factories import World
from tests.fakes.stripe_api import FakeStripeApi
from tests.fakes.upstream import FakeUpstream

MASTER_KEY = "tg-master-key-for-tests-0123456789"


REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # an unreachable Redis is an error here, never a skip
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"tollgate-test-{uuid.uuid4().hex}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}:*"):
        redis_client.delete(key)


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
def stripe_api() -> Iterator[FakeStripeApi]:
    """The loopback fake of Stripe's API that every test app calls (TOLLGATE_STRIPE_API_BASE)."""
    fake = FakeStripeApi().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def app(instance_dir: Path, stripe_api: FakeStripeApi) -> Iterator[Flask]:
    settings = config.load(
        env={
            "TOLLGATE_INSTANCE_PATH": str(instance_dir),
            "TOLLGATE_DATABASE_URL": _database_url(instance_dir),
            "TOLLGATE_SECRET_KEY": "s" * 48,
            "TOLLGATE_MASTER_KEY": MASTER_KEY,
            "TOLLGATE_MAX_BODY_MB": "8",
            "TOLLGATE_STRIPE_API_BASE": stripe_api.url,
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
def clean_db(app: Flask, upstream: FakeUpstream, stripe_api: FakeStripeApi) -> Iterator[None]:
    upstream.reset()
    stripe_api.reset()
    yield
    # The refusal counter's background flush must not write while the tables are emptied (on
    # PostgreSQL the two deadlocked): write what it holds now, and wait for a flush under way.
    app.extensions["tollgate.gateway"].refusals.flush()
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
        app.extensions["tollgate.gateway"].health.__init__()  # no breakers, nothing in flight
        app.extensions["tollgate.gateway"].levels.__init__(db.engine)  # no level seen yet


@pytest.fixture
def world(app: Flask, upstream: FakeUpstream, live_url: str) -> Iterator[World]:
    """A project `default` with a proxy key and model `gpt-test` served by the fake upstream."""
    with app.app_context():
        w = World(app, upstream, live_url)
        w.setup_default()
        yield w


GUNICORN_KEY = "tg-gunicorn-test-key-0123456789"


@pytest.fixture
def gunicorn_url(app: Flask, upstream: FakeUpstream, instance_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The production server (gunicorn, one gevent worker) on the test database, for the tests
    whose subject is the server's own behaviour (client hang-ups). Project `default`, model
    `gpt-test` on the fake upstream, 100,000 initial tokens, key GUNICORN_KEY."""
    config_file = tmp_path / "tollgate.yaml"
    config_file.write_text(
        GUNICORN_CONFIG.replace("UPSTREAM", upstream.base_url).replace("KEY", GUNICORN_KEY)
    )
    env = {
        "TOLLGATE_INSTANCE_PATH": str(instance_dir),
        "TOLLGATE_SECRET_KEY": "s" * 48,
        "TOLLGATE_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "TOLLGATE_CONFIG": str(config_file),
    }
    with gunicorn_serving(env) as served:
        yield served.url


@dataclasses.dataclass(frozen=True)
class Served:
    url: str
    pid: int  # gunicorn's master

    def workers(self) -> list[int]:
        """The master's worker processes, from /proc."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:
                    found.append(int(stat.parent.name))
        return found


@contextlib.contextmanager
def gunicorn_serving(settings: dict[str, str], ready: bool = True) -> Iterator[Served]:
    """`flask setup`, then gunicorn as `make run` starts it (one gevent worker unless TOLLGATE_WORKERS);
    serving once /readyz answers 200 (or, with ready=False, /healthz: a node that is up but not ready)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        bind = f"127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update({"TOLLGATE_WORKERS": "1", **settings, "TOLLGATE_BIND": bind})
    bin_dir = ROOT / ".venv" / "bin"
    subprocess.run(
        [bin_dir / "flask", "--app", "wsgi", "setup"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    proc = subprocess.Popen(
        [bin_dir / "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_serving(f"http://{bind}", proc, "/readyz" if ready else "/healthz")
        yield Served(f"http://{bind}", proc.pid)
    finally:
        stop_group(proc)


GUNICORN_CONFIG = """
projects:
  - slug: default
    name: Gunicorn tests
    settings: {new_customer_initial_tokens: 100000}
    models:
      - name: gpt-test
        price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
        deployments: [{provider: openai, base_url: "UPSTREAM", model: fake-model, region: us}]
    api_keys:
      - {name: tests, scope: proxy, key: "KEY"}
"""
ROOT = Path(__file__).resolve().parent.parent


def wait_until_serving(
    base: str, proc: subprocess.Popen, path: str = "/readyz", deadline_s: float = 60
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if requests.get(base + path, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or its worker is still booting (a slow machine): ask again
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)  # returns early only if the server died, which the assert reports
    raise AssertionError(f"{base} did not come up")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGINT is gunicorn's quick shutdown; what is left of the group after 15 s is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    # A worker still booting can hold the master up past this; the kill below ends it.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(15)


@pytest.fixture
def gunicorn_world(app: Flask, upstream: FakeUpstream, gunicorn_url: str) -> Iterator[World]:
    with app.app_context():
        w = World(app, upstream, gunicorn_url)
        w.key = GUNICORN_KEY
        yield w
