"""Sending the outbox (SPEC 7.2): signed webhook deliveries, outside any request or transaction.

A `Dispatcher` runs in the scheduler's process (`flask scheduler run`, which `make run` starts),
polling every second. Any number may run, on any number of nodes: a sender claims due deliveries
for a while (`claimed_until`, `FOR UPDATE SKIP LOCKED` on PostgreSQL) before it sends them, so two
senders never send one at the same time, and a sender that dies leaves claims that run out (or
that the next sender on its host frees at once, its process being gone). At least once: a delivery
is marked delivered only after its target answered 2xx.

Each delivery is signed per Standard Webhooks with the `standardwebhooks` library (`webhook-id` =
the event id) and POSTed to an address checked again when connecting (never link-local; no
redirects followed), with a 10 s timeout. Failures are retried with exponential backoff and jitter
for more than 24 hours, then marked failed; 410 unsubscribes the hook. Each hook has at most
PER_HOOK deliveries in flight, so a slow or dead target never holds up the others.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

from sqlalchemy import Engine, Table, delete, or_, select, update
from standardwebhooks import Webhook
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import HTTPError

from app.crypto import unseal
from app.db import iso, now_utc, write_transaction
from app.events import litellm_webhook, targets
from app.models.event import Delivery, DeliveryAttempt, Event, Hook
from app.models.idempotency import SchedulerLease
from app.models.project import Project

log = logging.getLogger(__name__)
deliveries = cast(Table, Delivery.__table__)
attempts = cast(Table, DeliveryAttempt.__table__)
events = cast(Table, Event.__table__)
hooks = cast(Table, Hook.__table__)
projects = cast(Table, Project.__table__)
leases = cast(Table, SchedulerLease.__table__)
LEASE = "scheduler"  # app.scheduler's lease

TIMEOUT_S = 10
CLAIM = timedelta(seconds=30)  # outlives one attempt (10 s) by far
# The waits after each failed attempt: about 27.7 hours in all, then the delivery is failed.
DELAYS_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200)
JITTER = 0.25  # each wait is stretched by up to a quarter: never shortened, so the series spans > 24 h
MAX_RETRY_AFTER_S = 3600
PER_HOOK = 2
WORKERS = 32
BATCH = 50
POLL_S = 1.0
RETENTION = timedelta(days=30)
MAX_ERROR = 500


@dataclass(frozen=True)
class Outgoing:
    """One claimed delivery, with what sending it needs."""

    delivery_id: int
    hook_id: int
    target_url: str
    sealed_secret: str
    attempts: int
    event_id: str
    body: str  # the event of SPEC 7.1, as JSON


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the target's HTTP status; None when it could not be reached
    error: str | None
    duration_ms: int
    retry_after_s: int | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def delivery_timeout() -> float:
    """Long enough for every delivery one round starts to be attempted once."""
    return TIMEOUT_S * 2 + 5


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _due(now: datetime):
    return (
        deliveries.c.status == "pending",
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
    )


def claim(engine: Engine, holder: str, now: datetime, busy: set[int], limit: int) -> list[Outgoing]:
    """Claim up to `limit` due deliveries (oldest due first), none of the `busy` hooks'."""
    due = select(deliveries.c.id).where(*_due(now)).order_by(deliveries.c.next_attempt_at).limit(limit)
    if busy:
        due = due.where(deliveries.c.hook_id.not_in(busy))
    due = due.with_for_update(skip_locked=True)  # PostgreSQL: concurrent senders skip each other's rows
    with write_transaction(engine) as conn:
        ids = list(
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(due.scalar_subquery()), *_due(now))
                .values(claimed_until=now + CLAIM, claimed_by=holder)
                .returning(deliveries.c.id)
            ).scalars()
        )
        if not ids:
            return []
        rows = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.hook_id,
                deliveries.c.attempts,
                hooks.c.target_url,
                hooks.c.secret,
                events.c.public_id,
                events.c.type,
                events.c.created_at,
                events.c.customer_external_id,
                events.c.data,
                projects.c.slug,
            )
            .join(hooks, hooks.c.id == deliveries.c.hook_id)
            .join(events, events.c.id == deliveries.c.event_id)
            .join(projects, projects.c.id == events.c.project_id)
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        ).all()
    return [
        Outgoing(
            r.id,
            r.hook_id,
            r.target_url,
            r.secret,
            r.attempts,
            r.public_id,
            json.dumps(
                {
                    "id": r.public_id,
                    "type": r.type,
                    "created_at": iso(r.created_at),
                    "project": r.slug,
                    "customer_id": r.customer_external_id,
                    "data": r.data,
                },
                separators=(",", ":"),
            ),
        )
        for r in rows
    ]


def unclaim(engine: Engine, holder: str, ids: list[int]) -> None:
    if ids:
        with write_transaction(engine) as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids), deliveries.c.claimed_by == holder)
                .values(claimed_until=None, claimed_by=None)
            )


def send(out: Outgoing, secret_key: str, now: datetime) -> Outcome:
    """POST one delivery, signed; never raises for anything the target or the network does."""
    started = time.perf_counter()

    def outcome(status: int | None, error: str | None, retry_after: int | None = None) -> Outcome:
        return Outcome(status, error, int((time.perf_counter() - started) * 1000), retry_after)

    secret = unseal(secret_key, out.sealed_secret) or ""
    headers = {
        "content-type": "application/json",
        "user-agent": "Tollgate-Webhooks/1",
        "webhook-id": out.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(out.event_id, now, out.body),
    }
    try:
        resp = post(out.target_url, out.body, headers)
    except targets.TargetRefused as exc:
        return outcome(None, f"target refused: {exc}")
    except (HTTPError, OSError) as exc:
        return outcome(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR])
    error = None if 200 <= resp.status < 300 else f"HTTP {resp.status}: {resp.text[:200]}"
    return outcome(resp.status, error, _retry_after(resp.headers.get("retry-after")))


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: dict[str, str]


def post(url: str, body: str, headers: dict[str, str]) -> Answer:
    """POST to the address the target's host resolves to, checked (never link-local) right here,
    so a name that moved since it was subscribed cannot reach the metadata service. Redirects are
    answers (3xx: not delivered), never followed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    address = targets.checked_addresses(host)[0]
    pool: HTTPConnectionPool
    timeout = Timeout(total=TIMEOUT_S)
    if https:
        pool = HTTPSConnectionPool(
            str(address),
            parts.port or 443,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
        )
    else:
        pool = HTTPConnectionPool(str(address), parts.port or 80, timeout=timeout, retries=False)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        resp = pool.urlopen(
            "POST",
            path,
            body=body.encode(),
            headers={**headers, "host": parts.netloc.rsplit("@", 1)[-1]},
            redirect=False,
            preload_content=False,
        )
        text = resp.read(2048, decode_content=False).decode("utf-8", "replace")
        return Answer(resp.status, text, {k.lower(): v for k, v in resp.headers.items()})
    finally:
        pool.close()


def _retry_after(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return min(int(value.strip()), MAX_RETRY_AFTER_S)


def next_wait_s(attempts: int, outcome: Outcome, rng: random.Random) -> float | None:
    """How long to wait after `attempts` failed attempts; None: give up (failed)."""
    if attempts > len(DELAYS_S):
        return None
    wait = DELAYS_S[attempts - 1] * (1 + rng.random() * JITTER)
    return max(wait, outcome.retry_after_s or 0)


def finish(
    engine: Engine, holder: str, out: Outgoing, outcome: Outcome, now: datetime, rng: random.Random
) -> str:
    """Record the attempt and what follows from it; returns the delivery's new status."""
    tried = out.attempts + 1
    values: dict[str, object] = dict(
        attempts=tried,
        last_status=outcome.status,
        last_error=outcome.error,
        last_attempt_at=now,
        claimed_until=None,
        claimed_by=None,
    )
    if outcome.delivered:
        values.update(status="delivered", delivered_at=now)
    elif outcome.status == 410:
        values.update(status="cancelled")
    elif (wait := next_wait_s(tried, outcome, rng)) is None:
        values.update(status="failed")
    else:
        values.update(next_attempt_at=now + timedelta(seconds=wait))
    with write_transaction(engine) as conn:
        conn.execute(
            attempts.insert().values(
                delivery_id=out.delivery_id,
                at=now,
                status=outcome.status,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == out.delivery_id, deliveries.c.claimed_by == holder)
            .values(**values)
        )
        if outcome.status == 410:  # the target is gone: unsubscribe it (SPEC 7.2)
            conn.execute(update(hooks).where(hooks.c.id == out.hook_id).values(active=False))
            conn.execute(
                update(deliveries)
                .where(deliveries.c.hook_id == out.hook_id, deliveries.c.status == "pending")
                .values(status="cancelled", claimed_until=None, claimed_by=None)
            )
    return str(values.get("status", "pending"))


def leads(engine: Engine, holder: str, now: datetime) -> bool:
    """Whether `holder` holds the scheduler's lease (app.scheduler) right now."""
    with engine.connect() as conn:
        return (
            conn.execute(
                select(leases.c.name).where(
                    leases.c.name == LEASE, leases.c.holder == holder, leases.c.expires_at > now
                )
            ).first()
            is not None
        )


def free_dead_claims(engine: Engine, host: str, alive: Callable[[int], bool]) -> int:
    """Free the claims of this host's senders that are gone (a crash, a SIGKILL): their
    deliveries go out now rather than when the claims run out."""
    with engine.connect() as conn:
        holders = conn.execute(
            select(deliveries.c.claimed_by)
            .where(deliveries.c.claimed_by.like(f"{host}:%"), deliveries.c.status == "pending")
            .distinct()
        ).scalars()
        dead = [h for h in holders if h.rsplit(":", 1)[-1].isdigit() and not alive(int(h.rsplit(":", 1)[-1]))]
    if not dead:
        return 0
    with write_transaction(engine) as conn:
        return conn.execute(
            update(deliveries)
            .where(deliveries.c.claimed_by.in_(dead), deliveries.c.status == "pending")
            .values(claimed_until=None, claimed_by=None)
        ).rowcount


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_old(engine: Engine, now: datetime) -> int:
    """Retention: deliveries that ended more than RETENTION ago go, with their attempts."""
    with write_transaction(engine) as conn:
        return conn.execute(
            delete(deliveries).where(
                deliveries.c.status != "pending", deliveries.c.created_at < now - RETENTION
            )
        ).rowcount


class Dispatcher:
    """The process's sender: claims due deliveries every POLL_S and sends them on a thread pool,
    at most PER_HOOK at a time per hook."""

    def __init__(
        self,
        engine: Engine,
        secret_key: str,
        holder: str | None = None,
        clock: Callable[[], datetime] = now_utc,
        workers: int = WORKERS,
        webhook_url: str | None = None,
    ) -> None:
        self.engine, self.secret_key, self.clock, self.workers = engine, secret_key, clock, workers
        self.webhook_url = webhook_url  # LiteLLM's WEBHOOK_URL (app.events.litellm_webhook)
        self.feeds: dict[int, litellm_webhook.Feed] = {}
        self.feeding: set[int] = set()
        self.holder = holder or holder_name()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="webhooks")
        self.in_flight: Counter[int] = Counter()
        self.lock = threading.Condition()
        self.rng = random.Random()

    def tick(self) -> int:
        """Claim and start what is due; returns how many deliveries were started."""
        with self.lock:
            busy = {hook for hook, n in self.in_flight.items() if n >= PER_HOOK}
            room = self.workers - sum(self.in_flight.values())
        if room <= 0:
            return 0
        started, extra = 0, []
        for out in claim(self.engine, self.holder, self.clock(), busy, min(room, BATCH)):
            with self.lock:
                if self.in_flight[out.hook_id] >= PER_HOOK:
                    extra.append(out.delivery_id)  # its hook is at its limit: for a later round
                    continue
                self.in_flight[out.hook_id] += 1
            self.pool.submit(self._deliver, out)
            started += 1
        unclaim(self.engine, self.holder, extra)
        return started + self._feed_litellm()

    def _feed_litellm(self) -> int:
        """LiteLLM's webhook, fed by the scheduler's leader only: its rows carry no claims, and one
        feeder keeps each project's POSTs in order."""
        now = self.clock()
        if not leads(self.engine, self.holder, now):
            return 0
        owed_to = litellm_webhook.targets(self.engine, self.webhook_url)
        litellm_webhook.drop_unowed(self.engine, set(owed_to))
        started = 0
        for project_id, url in owed_to.items():
            state = self.feeds.setdefault(project_id, litellm_webhook.Feed())
            with self.lock:
                if project_id in self.feeding or (state.retry_at is not None and state.retry_at > now):
                    continue
                self.feeding.add(project_id)
            self.pool.submit(self._feed, project_id, url, state)
            started += 1
        return started

    def _feed(self, project_id: int, url: str, state: litellm_webhook.Feed) -> None:
        try:
            litellm_webhook.feed(self.engine, project_id, url, state, self.clock, post)
        except Exception:  # the next round tries again
            log.exception("LiteLLM webhook of project %s could not be fed", project_id)
        finally:
            with self.lock:
                self.feeding.discard(project_id)
                self.lock.notify_all()

    def _deliver(self, out: Outgoing) -> None:
        try:
            outcome = send(out, self.secret_key, self.clock())
            finish(self.engine, self.holder, out, outcome, self.clock(), self.rng)
        except Exception:  # the claim runs out and the delivery is tried again
            log.exception("delivery %s could not be sent or recorded", out.delivery_id)
        finally:
            with self.lock:
                self.in_flight[out.hook_id] -= 1
                self.lock.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until no delivery of this sender is in flight; False if some still are at `timeout`."""
        with self.lock:
            return self.lock.wait_for(lambda: sum(self.in_flight.values()) == 0 and not self.feeding, timeout)

    def serve(self, stop: threading.Event) -> None:
        """Send until `stop` is set; a failing round is logged and the next one tried."""
        free_dead_claims(self.engine, socket.gethostname(), _alive)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("webhook delivery round failed")
            stop.wait(POLL_S)
        self.pool.shutdown(wait=False, cancel_futures=True)
