"""Who may sign in, and how often a wrong password may be tried."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta

import redis
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.db import now_utc, session_writes
from app.models.admin_user import AdminUser, SignInAttempt

# Five attempts at one account from one address in 15 minutes without the right password, or twenty
# attempts from one address whatever the accounts, then that address waits. Not per account alone:
# anyone who knows an admin's email could then lock the admin out from anywhere.
PER_ACCOUNT_AND_ADDRESS = RateLimitItemPerMinute(5, 15)
PER_ADDRESS = RateLimitItemPerMinute(20, 15)
# Attempt rows older than every window count for nothing: they are deleted as attempts are written.
KEPT = timedelta(seconds=max(PER_ACCOUNT_AND_ADDRESS.get_expiry(), PER_ADDRESS.get_expiry()))
# Compared against when the email is unknown, so a wrong email costs as much time as a wrong password.
_DECOY = generate_password_hash("decoy password for unknown accounts")

Keys = list[tuple[RateLimitItem, tuple[str, ...]]]


log = logging.getLogger(__name__)
REDIS_TIMEOUT_S = 0.5


class Throttle:
    """Sign-in attempts per (email, address) and per address, counted where every worker sees
    them: in Redis when configured, else in the database (`SignInAttempt` rows). Never per
    process: with several workers each would allow its own five tries.

    An attempt is counted before its password is checked, and counting says whether it may go
    on: attempts sent in parallel cannot all pass one check made before any was counted. A
    right password clears its account's count from that address; the address's own count keeps
    every attempt. `now` is the database count's clock.
    """

    def __init__(self, redis_url: str | None, key_prefix: str = "tollgate-signin"):
        self._windows: MovingWindowRateLimiter | None = None
        if redis_url:
            storage = storage_from_string(
                redis_url,
                key_prefix=key_prefix,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self._windows = MovingWindowRateLimiter(storage)

    def attempt(self, session: Session, email: str, address: str, now: datetime | None = None) -> bool:
        """Count one attempt; False when a window is already full (the attempt is then not counted)."""
        keys = _keys(email, address)
        if self._windows is not None:
            try:
                return all([self._windows.hit(limit, *key) for limit, key in keys])  # every key counted
            except redis.RedisError:  # Redis is away: the database counts instead (never no count)
                log.warning("sign-in throttle: Redis unreachable, counting in the database")
        return _attempt_in_database(session, keys, now or now_utc())

    def succeeded(self, session: Session, email: str, address: str) -> None:
        limit, key = _keys(email, address)[0]
        if self._windows is not None:
            try:
                self._windows.clear(limit, *key)
                return
            except redis.RedisError:
                log.warning("sign-in throttle: Redis unreachable, clearing the database's count")
        with session_writes(session):
            session.execute(delete(SignInAttempt).where(SignInAttempt.key == _row_key(key)))


def _keys(email: str, address: str) -> Keys:
    return [
        (PER_ACCOUNT_AND_ADDRESS, ("account", email.strip().lower(), address)),
        (PER_ADDRESS, ("address", address)),
    ]


def _row_key(key: tuple[str, ...]) -> str:
    """A digest: fits the column whatever was typed, and keeps no typed email (or a password typed
    into the email box) in the database."""
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _attempt_in_database(session: Session, keys: Keys, now: datetime) -> bool:
    """Insert and commit the attempt's rows, then count: the k-th attempt to commit sees at least
    k rows, so at most `limit` attempts in a window go on, however many race. Rows past every
    window go as rows are written (an indexed range on `at`)."""
    with session_writes(session):
        session.execute(delete(SignInAttempt).where(SignInAttempt.at <= now - KEPT))
        rows = [SignInAttempt(key=_row_key(key), at=now) for _, key in keys]
        session.add_all(rows)
    full = [
        row
        for row, (limit, _) in zip(rows, keys, strict=True)
        if _count(session, row, limit, now) > limit.amount
    ]
    if full:  # not counted, as a refused Redis hit is not
        with session_writes(session):
            session.execute(delete(SignInAttempt).where(SignInAttempt.id.in_([row.id for row in rows])))
    return not full


def _count(session: Session, row: SignInAttempt, limit: RateLimitItem, now: datetime) -> int:
    since = now - timedelta(seconds=limit.get_expiry())
    count = (
        select(func.count())
        .select_from(SignInAttempt)
        .where(SignInAttempt.key == row.key, SignInAttempt.at > since)
    )
    return session.scalar(count) or 0


def authenticate(session: Session, email: str, password: str) -> AdminUser | None:
    user = session.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    if user is None:
        check_password_hash(_DECOY, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
