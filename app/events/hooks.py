"""Webhook subscriptions and their deliveries (SPEC 7.2), shared by the API and the admin.
They flush; the caller commits."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crypto import seal
from app.errors import Conflict, Invalid, NotFound
from app.events import targets
from app.models.event import EVENT_TYPES, Delivery, Hook, HookEventType
from app.models.project import Project

RETRYABLE = ("pending", "failed")


def new_secret() -> str:
    """Standard Webhooks' secret: `whsec_` and 32 random bytes in standard base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_hook(
    session: Session, project: Project, target_url: str, event_types: Sequence[str], secret_key: str
) -> tuple[Hook, str]:
    """Subscribe `target_url` to these event types; returns the hook and its secret (shown once)."""
    try:
        targets.check(target_url)
    except targets.TargetRefused as exc:
        raise Invalid(f"target_url: {exc}", "target_url") from exc
    wanted = list(dict.fromkeys(event_types))
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if not wanted or unknown:
        raise Invalid(f"event types must be some of {', '.join(EVENT_TYPES)}", "event")
    secret = new_secret()
    hook = Hook(
        public_id="hook_" + secrets.token_hex(12),
        project_id=project.id,
        target_url=target_url,
        secret=seal(secret_key, secret) or "",
        event_types=[HookEventType(event_type=t) for t in wanted],
    )
    session.add(hook)
    session.flush()
    return hook, secret


def find_hook(session: Session, project: Project, public_id: str) -> Hook:
    hook = session.scalar(select(Hook).where(Hook.project_id == project.id, Hook.public_id == public_id))
    if hook is None:
        raise NotFound(f"no hook {public_id!r}", "id")
    return hook


def find_delivery(session: Session, project: Project, delivery_id: int) -> Delivery:
    delivery = session.scalar(
        select(Delivery)
        .join(Hook, Hook.id == Delivery.hook_id)
        .where(Delivery.id == delivery_id, Hook.project_id == project.id)
    )
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}", "id")
    return delivery


def retry_now(session: Session, delivery: Delivery, now: datetime) -> Delivery:
    """Send a delivery that failed, or waits for its next attempt, again now (SPEC 7.2). A failed
    one gets a fresh series of retries; one being sent right now is left to that attempt."""
    if delivery.status not in RETRYABLE:
        raise Conflict(
            f"delivery {delivery.id} is {delivery.status}: only pending or failed ones are sent again"
        )
    changed = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status.in_(RETRYABLE),
            (Delivery.claimed_until.is_(None)) | (Delivery.claimed_until < now),
        )
        .values(
            status="pending",
            next_attempt_at=now,
            attempts=Delivery.attempts if delivery.status == "pending" else 0,
        )
    ).rowcount
    if not changed:
        raise Conflict(f"delivery {delivery.id} is being sent right now")
    session.flush()
    session.refresh(delivery)
    return delivery
