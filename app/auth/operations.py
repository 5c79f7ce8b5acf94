"""Who may sign in, and how often a wrong password may be tried."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.db import now_utc
from app.models.admin_user import AdminUser, SignInFailure

# Five wrong passwords for one account from one address in 15 minutes, or twenty from one address
# whatever the accounts, then that address waits. Not per account alone: anyone who knows an
# admin's email could then lock the admin out from anywhere.
PER_ACCOUNT_AND_ADDRESS = RateLimitItemPerMinute(5, 15)
PER_ADDRESS = RateLimitItemPerMinute(20, 15)
# Failure rows older than every window count for nothing: they are deleted as failures are written.
KEPT = timedelta(seconds=max(PER_ACCOUNT_AND_ADDRESS.get_expiry(), PER_ADDRESS.get_expiry()))
# Compared against when the email is unknown, so a wrong email costs as much time as a wrong password.
_DECOY = generate_password_hash("decoy password for unknown accounts")

Keys = list[tuple[RateLimitItem, tuple[str, ...]]]


class Throttle:
    """Failed sign-ins per (email, address) and per address, counted where every worker sees them:
    in Redis when configured, else in the database (`SignInFailure` rows). Never per process: with
    several workers each would allow its own five tries.

    `session` is the database's (unused with Redis); `now` is the database count's clock.
    """

    def __init__(self, redis_url: str | None, key_prefix: str = "tollgate-signin"):
        self._windows: MovingWindowRateLimiter | None = None
        if redis_url:
            self._windows = MovingWindowRateLimiter(storage_from_string(redis_url, key_prefix=key_prefix))

    def blocked(self, session: Session, email: str, address: str, now: datetime | None = None) -> bool:
        keys = _keys(email, address)
        if self._windows is not None:
            return any(not self._windows.test(limit, *key) for limit, key in keys)
        return _blocked_in_database(session, keys, now or now_utc())

    def failed(self, session: Session, email: str, address: str, now: datetime | None = None) -> None:
        """Count one wrong password. In the database: flushes, the caller commits."""
        keys = _keys(email, address)
        if self._windows is None:
            _record_in_database(session, keys, now or now_utc())
            return
        for limit, key in keys:
            self._windows.hit(limit, *key)


def _keys(email: str, address: str) -> Keys:
    return [
        (PER_ACCOUNT_AND_ADDRESS, ("account", email.strip().lower(), address)),
        (PER_ADDRESS, ("address", address)),
    ]


def _row_key(key: tuple[str, ...]) -> str:
    """A digest: fits the column whatever was typed, and keeps no typed email (or a password typed
    into the email box) in the database."""
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _blocked_in_database(session: Session, keys: Keys, now: datetime) -> bool:
    for limit, key in keys:
        since = now - timedelta(seconds=limit.get_expiry())
        count = (
            select(func.count())
            .select_from(SignInFailure)
            .where(SignInFailure.key == _row_key(key), SignInFailure.at > since)
        )
        if (session.scalar(count) or 0) >= limit.amount:
            return True
    return False


def _record_in_database(session: Session, keys: Keys, now: datetime) -> None:
    """One row per throttle key; the rows every window has passed go (an indexed range on `at`)."""
    session.execute(
        delete(SignInFailure).where(SignInFailure.at <= now - KEPT),
        execution_options={"synchronize_session": False},
    )
    session.add_all(SignInFailure(key=_row_key(key), at=now) for _, key in keys)
    session.flush()


def authenticate(session: Session, email: str, password: str) -> AdminUser | None:
    user = session.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    if user is None:
        check_password_hash(_DECOY, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
