"""The scheduler: a declarative job table run by whichever scheduler process holds the leader lease.

`flask scheduler run` runs it as its own process (`make run` starts one). Any number may run, on
any number of nodes: each tick, a process renews or takes the lease (one row in the database) and
only the holder runs jobs. Every job is idempotent, so a job run twice changes nothing the second time.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.customers.refusals import forget_old_refusals
from app.db import now_utc, write_transaction
from app.events.delivery import LEASE, Dispatcher, forget_old
from app.metering.allowance import rules_of
from app.metering.rollover import roll_over_due
from app.metering.settlement import release_expired
from app.models.idempotency import SchedulerLease
from app.models.tier import UsageTier

log = logging.getLogger(__name__)
LEASE_TTL = timedelta(seconds=30)
TICK_S = 10


def _roll_over(engine: Engine, now: datetime) -> int:
    with Session(engine) as session:
        rules = {t.id: rules_of(t) for t in session.scalars(select(UsageTier))}
    return roll_over_due(engine, rules, now)


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[Engine, datetime], int]


JOBS = (
    Job("period-rollover", timedelta(minutes=1), _roll_over),
    Job("expired-holds", timedelta(minutes=1), release_expired),
    Job("delivery-retention", timedelta(hours=1), forget_old),
    Job("refusal-retention", timedelta(hours=1), forget_old_refusals),
)

leases = SchedulerLease.__table__


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def give_up_lease(engine: Engine, holder: str) -> None:
    """On a clean stop: let another scheduler lead at once instead of after the lease runs out."""
    with write_transaction(engine) as conn:
        conn.execute(leases.delete().where(leases.c.name == LEASE, leases.c.holder == holder))


def take_lease(engine: Engine, holder: str, now: datetime) -> bool:
    """Renew or take the leader lease; True if this holder now leads until now + LEASE_TTL."""
    until = now + LEASE_TTL
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with write_transaction(engine) as conn:
        created = conn.execute(
            dialect.insert(leases)
            .values(name=LEASE, holder=holder, expires_at=until)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(leases.c.name)
        ).first()
        if created is not None:
            return True
        renewed = conn.execute(
            update(leases)
            .where(leases.c.name == LEASE, (leases.c.holder == holder) | (leases.c.expires_at < now))
            .values(holder=holder, expires_at=until)
        )
        return renewed.rowcount == 1


class Scheduler:
    """Runs each job when it is due, while holding the lease."""

    def __init__(
        self,
        engine: Engine,
        holder: str | None = None,
        clock: Callable[[], datetime] = now_utc,
        dispatcher: Dispatcher | None = None,
    ):
        self.engine = engine
        self.holder = holder or holder_name()
        self.clock = clock
        self.last_run: dict[str, datetime] = {}
        # Webhook deliveries go out from this process too, every second, leader or not: senders
        # claim rows, so any number of them can run side by side (app.events.delivery).
        self.dispatcher = dispatcher

    def tick(self) -> list[str]:
        """One round: the names of the jobs this process ran (none unless it leads)."""
        now = self.clock()
        if not take_lease(self.engine, self.holder, now):
            return []
        ran = []
        for job in JOBS:
            last = self.last_run.get(job.name)
            if last is not None and now - last < job.every:
                continue
            changed = job.run(self.engine, now)
            self.last_run[job.name] = now
            ran.append(job.name)
            if changed:
                log.info("job %s changed %d rows", job.name, changed)
        return ran

    def serve(self) -> None:
        """Tick every TICK_S seconds until stopped (APScheduler's blocking loop)."""
        from apscheduler.schedulers.blocking import BlockingScheduler

        # `make run` stops the scheduler with SIGTERM: unwind so the lease is handed back.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

        stop = threading.Event()
        if self.dispatcher is not None:
            threading.Thread(target=self.dispatcher.serve, args=(stop,), name="webhooks", daemon=True).start()
        runner = BlockingScheduler(timezone="UTC")
        runner.add_job(
            self.tick, "interval", seconds=TICK_S, max_instances=1, coalesce=True, next_run_time=now_utc()
        )
        try:
            runner.start()
        finally:
            stop.set()
            give_up_lease(self.engine, self.holder)
