"""At least once across crashes (SPEC 7.2, 11.8; issue 11, acceptance 3): the process that sends
deliveries (`flask scheduler run`) is killed with SIGKILL while deliveries are pending and in
flight; started again, it delivers every event."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.keys.operations import create_key
from app.models.event import Delivery
from tests.conftest import ROOT, stop_group
from tests.events.receiver import serve
from tests.factories import World


@contextmanager
def sender_process(app: Flask, instance_dir) -> Iterator[subprocess.Popen]:
    """The scheduler's process, as `make run` starts it, on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update(
        TOLLGATE_INSTANCE_PATH=str(instance_dir),
        TOLLGATE_SECRET_KEY=app.config["SECRET_KEY"],
        TOLLGATE_DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
    )
    proc = subprocess.Popen(
        [ROOT / ".venv" / "bin" / "flask", "--app", "wsgi", "scheduler", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_group(proc)


def test_a_sender_killed_mid_delivery_loses_nothing(world: World, app: Flask, instance_dir):
    _, admin = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    headers = {"Authorization": f"Bearer {admin}"}
    receiver_gen = serve()
    receiver = next(receiver_gen)
    try:
        receiver.hang.add("/crm")  # the first deliveries stay in flight until the sender is killed
        hook = requests.post(
            world.url + "/api/hooks",
            json={"target_url": receiver.url + "/crm", "event": "customer.created"},
            headers=headers,
            timeout=30,
        )
        assert hook.status_code == 201, hook.text
        for i in range(12):
            made = requests.post(
                world.url + "/api/customers", json={"customer_id": f"lead-{i}"}, headers=headers, timeout=30
            )
            assert made.status_code == 201
        events = {
            e["id"]
            for e in requests.get(
                world.url + "/api/events?type=customer.created&limit=50", headers=headers, timeout=30
            ).json()["data"]
        }
        assert len(events) == 12

        with sender_process(app, instance_dir) as first:
            assert len(receiver.wait_for("/crm", 2, 30)) >= 2  # two in flight, the rest pending
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        db.session.expire_all()
        claimed = db.session.scalars(select(Delivery).where(Delivery.claimed_by.is_not(None))).all()
        assert claimed and all(d.status == "pending" for d in claimed)  # the dead sender's claims

        receiver.hang.discard("/crm")
        receiver.release.set()  # the dead sender's requests end; nobody records their answers
        with sender_process(app, instance_dir):
            got = receiver.wait_for("/crm", 2 + len(events), 60)
            delivered = {r.headers["webhook-id"] for r in got}
            assert events <= delivered  # every event at least once
            for _ in range(60):  # the last answers are being recorded
                db.session.expire_all()
                statuses = {d.status for d in db.session.scalars(select(Delivery))}
                if statuses == {"delivered"}:
                    break
                receiver.wait_for("/crm", 10_000, 0.5)
            assert statuses == {"delivered"}
    finally:
        receiver_gen.close()
