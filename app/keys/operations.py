"""API key operations. The raw key leaves this module once, at creation."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import stamp
from app.db import now_utc
from app.errors import Conflict, Invalid
from app.models.api_key import SCOPES, ApiKey, hash_key
from app.models.project import Project

MIN_LITERAL = 16


def new_secret() -> str:
    """`tg-` and 40 url-safe characters (SPEC 1)."""
    return "tg-" + secrets.token_urlsafe(30)


def create_key(
    session: Session, project: Project, name: str, scope: str, raw: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret, which is never stored in the clear."""
    if scope not in SCOPES:
        raise Invalid(f"scope must be one of {', '.join(SCOPES)}", "scope")
    if not name.strip():
        raise Invalid("name must not be empty", "name")
    raw = raw or new_secret()
    if len(raw) < MIN_LITERAL:
        raise Invalid(f"a key must be at least {MIN_LITERAL} characters", "key")
    digest = hash_key(raw)
    if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) is not None:
        raise Conflict("that key is already in use", "key")
    key = ApiKey(project_id=project.id, name=name.strip(), scope=scope, prefix=raw[:7], key_hash=digest)
    session.add(key)
    stamp.bump(session)
    session.flush()
    return key, raw


def revoke_key(session: Session, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = now_utc()
        stamp.bump(session)
        session.flush()


def find_by_secret(session: Session, raw: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw)))
