"""Forms that answer with a secret cannot redirect after the POST (the secret is shown in that
answer only), so a reload would send them again and make a second key. Such a form carries a
one-time token; the first submission claims it in the same transaction as its change."""

from __future__ import annotations

import secrets

from flask import request
from markupsafe import Markup
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflict, now_utc
from app.models.idempotency import IdempotencyRecord

FIELD = "once"
PREFIX = "admin-form:"


def once_field() -> Markup:
    """The hidden input (a Jinja global): a fresh token each time the form is rendered."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, secrets.token_urlsafe(18))


def claim(session: Session, project_id: int) -> bool:
    """True for the first submission of this rendering of the form; False for a resubmission."""
    token = request.form.get(FIELD, "")
    if not 16 <= len(token) <= 64:
        return False  # no token: not a form this admin rendered
    claimed = insert_ignoring_conflict(
        session.connection(),
        IdempotencyRecord.__table__,
        {
            "project_id": project_id,
            "key": PREFIX + token,
            "request_hash": "",
            "state": "done",
            "created_at": now_utc(),
        },
        ["project_id", "key"],
    )
    return claimed is not None


class AlreadySent(Exception):
    """Raised inside the write's transaction, so nothing of the resubmission is kept."""


def claim_or_refuse(session: Session, project_id: int) -> None:
    if not claim(session, project_id):
        raise AlreadySent
