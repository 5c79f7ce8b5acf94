"""Under gunicorn's gevent worker, a slow PostgreSQL statement must not stall other requests
(DESIGN, gevent trap 1). Runs against the machine's PostgreSQL in both CI passes."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import requests
from sqlalchemy.engine import make_url

from tests.conftest import stop_group

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat(base: str, user: str, timeout: float) -> requests.Response:
    return requests.post(
        f"{base}/v1/chat/completions",
        timeout=timeout,
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "model": "demo",
            "user": user,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )


def test_blocked_statement_does_not_stall_the_worker(tmp_path: Path):
    url = fresh_database(server_url())
    (tmp_path / "config.yaml").write_text(CONFIG)
    bind = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update(
        TOLLGATE_INSTANCE_PATH=str(tmp_path),
        TOLLGATE_DATABASE_URL=url,
        TOLLGATE_BIND=bind,
        TOLLGATE_CONFIG=str(tmp_path / "config.yaml"),
        TOLLGATE_WORKERS="1",
    )
    bin_ = ROOT / ".venv" / "bin"
    subprocess.run(
        [bin_ / "flask", "--app", "wsgi", "setup"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    proc = subprocess.Popen(
        [bin_ / "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://{bind}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not come up"
                proc.poll()
                assert proc.returncode is None, "gunicorn exited"
                threading.Event().wait(0.1)
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
    finally:
        stop_group(proc)


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
