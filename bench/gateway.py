"""The gateway under test, started the way `make run` starts it: `flask --app wsgi setup`, then
`gunicorn -c gunicorn.conf.py wsgi:app` (gevent worker), with a bench config file (SPEC 9)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "tg-bench-key-0123456789abcdef"
ADMIN_KEY = "tg-bench-admin-key-0123456789ab"
UPSTREAM_KEY = "sk-bench"
MODEL = "bench-model"
PACED_MODEL = "bench-model-paced"
MESSAGES_MODEL = "bench-claude"  # an anthropic deployment on the same fake upstream
UPSTREAM_MODEL = "bench-upstream"
START_TIMEOUT_S = 90


class GatewayError(RuntimeError):
    """The gateway could not be set up or started; the message says why, the log says more."""


@dataclass(frozen=True)
class Database:
    label: str  # "SQLite" / "PostgreSQL"
    url: str


def sqlite_database(workdir: Path) -> Database:
    return Database("SQLite", f"sqlite:///{workdir / 'bench.db'}")


def postgres_database(admin_dsn: str, name: str) -> Database:
    """A fresh, empty database `name` (dropped first if it exists); GatewayError if PG is unreachable."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            info = conn.info
            host, port, user = info.host, info.port, info.user
    except psycopg.Error as exc:
        raise GatewayError(f"PostgreSQL not usable via {admin_dsn!r}: {str(exc).strip()}") from exc
    return Database("PostgreSQL", f"postgresql+psycopg://{user}@{host}:{port}/{name}")


def pg_counters(admin_dsn: str, name: str) -> tuple[int, int] | None:
    """(sessions ever opened, transactions ever ended) on database `name`, from pg_stat_database."""
    import psycopg

    query = "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(query, (name,)).fetchone()
    except psycopg.Error:
        return None
    return (int(row[0]), int(row[1])) if row and None not in row else None


def config_file(path: Path, upstream_port: int, pace_ms: int) -> Path:
    """The bench config: one plain and one paced model on the fake upstream, one proxy key."""

    def deployment(prefix: str) -> dict:
        return {
            "provider": "openai",
            "base_url": f"http://127.0.0.1:{upstream_port}{prefix}/v1",
            "api_key": UPSTREAM_KEY,
            "model": UPSTREAM_MODEL,
            "region": "us",
            "timeout_s": 600,
        }

    price = {"input_per_mtok": 0.15, "output_per_mtok": 0.60}
    config = {
        "projects": [
            {
                "slug": "default",
                "name": "Bench",
                "settings": {"new_customer_initial_tokens": 1_000_000_000},
                "models": [
                    {
                        "name": MODEL,
                        "model_tier": "standard",
                        "price": price,
                        "deployments": [deployment("")],
                    },
                    {
                        "name": PACED_MODEL,
                        "model_tier": "standard",
                        "price": price,
                        "deployments": [deployment(f"/pace/{pace_ms}")],
                    },
                    {
                        "name": MESSAGES_MODEL,
                        "model_tier": "standard",
                        "price": price,
                        "deployments": [
                            dict(
                                deployment(""),
                                provider="anthropic",
                                base_url=f"http://127.0.0.1:{upstream_port}",
                            )
                        ],
                    },
                ],
                "api_keys": [
                    {"name": "bench", "scope": "proxy", "key": API_KEY},
                    {"name": "bench-admin", "scope": "admin", "key": ADMIN_KEY},
                ],
            }
        ]
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Gateway:
    """One gunicorn master with its gevent worker(s), on its own instance dir and database."""

    def __init__(
        self,
        database: Database,
        workdir: Path,
        port: int,
        config: Path,
        log: Path,
        webhook_url: str | None = None,
        redis_url: str | None = None,
        workers: int = 1,
    ):
        self.database = database
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_") and k != "WEBHOOK_URL"
        }
        self.env.update(
            TOLLGATE_INSTANCE_PATH=str(workdir),
            TOLLGATE_DATABASE_URL=database.url,
            TOLLGATE_CONFIG=str(config),
            TOLLGATE_BIND=f"127.0.0.1:{port}",
            TOLLGATE_SECRET_KEY=secrets.token_urlsafe(36),
            TOLLGATE_WORKERS=str(workers),  # one gevent worker by default on either database, so they compare
            PYTHONUNBUFFERED="1",
        )
        if webhook_url:
            self.env["WEBHOOK_URL"] = webhook_url  # LiteLLM's spend webhook: every customer call owes one
        if redis_url:
            self.env["TOLLGATE_REDIS_URL"] = redis_url

    def subscribe(self, target_url: str, event: str) -> None:
        """A webhook subscription through /api, as Zapier makes one."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"target_url": target_url, "event": event})
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
        conn.request("POST", "/api/hooks", body=body, headers=headers)
        status = conn.getresponse().status
        conn.close()
        if status != 201:
            raise GatewayError(f"POST /api/hooks answered {status}")

    def setup(self) -> None:
        with self.log.open("a") as out:
            out.write("$ flask --app wsgi setup\n")
            out.flush()
            done = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "setup"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
        if done.returncode != 0:
            raise GatewayError(f"`flask --app wsgi setup` exited {done.returncode}; see {self.log}")

    def start(self) -> None:
        out = self.log.open("a")
        out.write("$ gunicorn -c gunicorn.conf.py wsgi:app\n")
        out.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"gunicorn exited {self.proc.returncode} at start; see {self.log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and self.workers():
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)  # polling for start-up only; nothing is measured here
        raise GatewayError(f"gunicorn did not answer /healthz within {START_TIMEOUT_S} s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers(self) -> list[int]:
        return procstat.children_of(self.pid)

    def cpu_seconds(self) -> float:
        """Master + workers (and anything they reaped): the gateway's whole CPU bill."""
        return procstat.tree_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = self.workers()
        self.proc.send_signal(signal.SIGTERM)  # graceful: gunicorn stops its workers
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            for pid in workers:  # orphaned by the kill: end them by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
