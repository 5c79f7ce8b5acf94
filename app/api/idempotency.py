"""Idempotency-Key on API writes (SPEC 6): a replay returns the first answer, a duplicate in
flight gets 409 `idempotency_in_progress`, the same key with another body 409
`idempotency_conflict`. The key is claimed with a unique insert, so the change happens once."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from functools import wraps

from flask import Response, g, request
from sqlalchemy import delete, select, update

from app.api.errors import ApiError
from app.db import insert_ignoring_conflict, now_utc, write_transaction
from app.extensions import db
from app.models.idempotency import IdempotencyRecord

records = IdempotencyRecord.__table__
HEADER = "Idempotency-Key"


def _fingerprint() -> str:
    raw = request.get_data(cache=True)
    with contextlib.suppress(ValueError):  # the same JSON with other spacing or key order is the same request
        raw = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(f"{request.method} {request.path}\n".encode() + raw).hexdigest()


def idempotent(view: Callable) -> Callable:
    """Outermost decorator of a write view: it sees the finished response."""

    @wraps(view)
    def guarded(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not 0 < len(key) <= 255:
            raise ApiError(400, f"{HEADER} must be 1 to 255 characters", param=HEADER)
        fingerprint = _fingerprint()
        if not _claim(key, fingerprint):
            return _replay(key, fingerprint)
        try:
            response = view(*args, **kwargs)
        except BaseException:
            _forget(key)  # nothing was done: the same key may be tried again
            raise
        _remember(key, response)
        return response

    return guarded


def _claim(key: str, fingerprint: str) -> bool:
    with write_transaction(db.engine) as conn:
        return (
            insert_ignoring_conflict(
                conn,
                records,
                dict(
                    project_id=g.project.id,
                    key=key,
                    request_hash=fingerprint,
                    state="in_progress",
                    created_at=now_utc(),
                ),
                ["project_id", "key"],
            )
            is not None
        )


def _replay(key: str, fingerprint: str) -> Response:
    with db.engine.connect() as conn:
        row = conn.execute(
            select(records).where(records.c.project_id == g.project.id, records.c.key == key)
        ).first()
    if row is None:  # the first attempt failed and let the key go between our claim and this read
        raise ApiError(
            409, "A request with this Idempotency-Key is in progress.", code="idempotency_in_progress"
        )
    if row.request_hash != fingerprint:
        raise ApiError(
            409, "This Idempotency-Key was used with a different request.", code="idempotency_conflict"
        )
    if row.state != "done":
        raise ApiError(
            409, "A request with this Idempotency-Key is in progress.", code="idempotency_in_progress"
        )
    replay = Response(json.dumps(row.response_body), status=row.response_status, mimetype="application/json")
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def _remember(key: str, response) -> None:
    response = response if isinstance(response, Response) else None
    if response is None or response.status_code >= 500:
        _forget(key)
        return
    body = response.get_json(silent=True) if response.status_code != 204 else None
    with write_transaction(db.engine) as conn:
        conn.execute(
            update(records)
            .where(records.c.project_id == g.project.id, records.c.key == key)
            .values(state="done", response_status=response.status_code, response_body=body)
        )


def _forget(key: str) -> None:
    with write_transaction(db.engine) as conn:
        conn.execute(delete(records).where(records.c.project_id == g.project.id, records.c.key == key))
