"""Under gunicorn's gevent worker, a slow PostgreSQL statement must not stall other requests
(DESIGN, gevent trap 1). Runs against the machine's PostgreSQL in both CI passes."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import psycopg
import requests
from sqlalchemy.engine import make_url

from tests import factories
from tests.conftest import gunicorn_serving

ROOT = Path(__file__).resolve().parent.parent
DB = "tollgate_gevent_test"
KEY = "tg-gevent-test-key-0123456789"
CONFIG = """
projects:
  - slug: default
    name: Gevent
    settings: {new_customer_initial_tokens: 100000}
    models:
      - name: demo
        deployments: [{provider: mock, model: mock, region: us}]
    api_keys:
      - {name: t, scope: proxy, key: "KEY"}
""".replace("KEY", KEY)


def server_url() -> str:
    base = os.environ.get("TOLLGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    return str(make_url(base).set(drivername="postgresql+psycopg"))


def libpq(url: str, database: str) -> str:
    u = make_url(url).set(database=database)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def fresh_database(url: str) -> str:
    with psycopg.connect(libpq(url, make_url(url).database), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return make_url(url).set(database=DB).render_as_string(hide_password=False)


def chat(base: str, user: str, timeout: float):
    return factories.chat(base, KEY, user, model="demo", timeout=timeout)


def test_blocked_statement_does_not_stall_the_worker(tmp_path: Path):
    url = fresh_database(server_url())
    (tmp_path / "config.yaml").write_text(CONFIG)
    settings = {
        "TOLLGATE_INSTANCE_PATH": str(tmp_path),
        "TOLLGATE_DATABASE_URL": url,
        "TOLLGATE_CONFIG": str(tmp_path / "config.yaml"),
    }
    with gunicorn_serving(settings) as served:
        base = served.url
        assert chat(base, "slow", 10).status_code == 200  # creates the customer
        with psycopg.connect(libpq(url, DB)) as locker:
            # Hold the customer's row: the gateway's reservation for "slow" now waits on PostgreSQL.
            locker.execute("SELECT id FROM customers WHERE external_id = 'slow' FOR UPDATE")
            outcome: dict = {}
            blocked = threading.Thread(target=lambda: outcome.update(resp=chat(base, "slow", 30)))
            blocked.start()
            with psycopg.connect(libpq(url, DB), autocommit=True) as watcher:
                for _ in range(200):
                    waiting = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND wait_event_type = 'Lock'",
                        (DB,),
                    ).fetchone()[0]
                    if waiting:
                        break
                    threading.Event().wait(0.05)
                assert waiting, "the gateway never reached the locked row"
            # While that statement waits, the same worker serves others.
            other = chat(base, "other", 5)
            assert other.status_code == 200
            assert requests.get(base + "/healthz", timeout=5).status_code == 200
            assert blocked.is_alive(), "the locked call finished although its row was locked"
            locker.rollback()
        blocked.join(30)
        assert outcome["resp"].status_code == 200


def test_start_up_refuses_a_blocking_psycopg_wait(tmp_path: Path):
    """The check behind the test above: a worker whose psycopg waits in C refuses to start."""
    script = (
        "from gevent import monkey; monkey.patch_all()\n"
        "from app import config, create_app\n"
        "try:\n"
        f"    create_app(config.load(env={{'TOLLGATE_INSTANCE_PATH': {str(tmp_path)!r},"
        f" 'TOLLGATE_DATABASE_URL': {server_url()!r}}}))\n"
        "except config.ConfigError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {**os.environ, "PSYCOPG_WAIT_FUNC": "wait_c"}
    done = subprocess.run(
        [ROOT / ".venv" / "bin" / "python", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "refused: psycopg was imported before gevent patched" in done.stdout, done.stderr
