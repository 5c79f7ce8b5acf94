"""gunicorn settings. Imports nothing from the app: gevent must patch the process before psycopg
is imported (no --preload), or PostgreSQL waits would block every greenlet in the worker."""

import multiprocessing
import os

bind = os.environ.get("TOLLGATE_BIND", "127.0.0.1:8000")
worker_class = "gevent"
# SQLite serialises writers: one process. PostgreSQL (+ Redis for rate limits) may run many.
_default_workers = 1 if not os.environ.get("TOLLGATE_DATABASE_URL", "").startswith("postgres") else min(
    4, multiprocessing.cpu_count())
workers = int(os.environ.get("TOLLGATE_WORKERS", _default_workers))
worker_connections = int(os.environ.get("TOLLGATE_WORKER_CONNECTIONS", "2000"))
# LLM calls hold a connection for minutes; gunicorn must not kill a busy worker for it.
timeout = int(os.environ.get("TOLLGATE_WORKER_TIMEOUT", "900"))
graceful_timeout = 30
keepalive = 75
accesslog = os.environ.get("TOLLGATE_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("TOLLGATE_LOG_LEVEL", "info")
# The CLI control socket sits at one fixed path per user; instances would share it. Not used.
control_socket_disable = True


def post_worker_init(worker):
    """Move what the app allocated at start-up out of the collector's way: full collections
    then scan only per-request garbage, and a pause stops every greenlet of the worker."""
    import gc

    gc.collect()
    gc.freeze()
