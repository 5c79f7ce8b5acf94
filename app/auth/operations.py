"""Who may sign in, and how often a wrong password may be tried."""

from __future__ import annotations

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.models.admin_user import AdminUser

# Five wrong passwords for one account from one address in 15 minutes, or twenty from one address
# whatever the accounts, then that address waits. Not per account alone: anyone who knows an
# admin's email could then lock the admin out from anywhere.
PER_ACCOUNT_AND_ADDRESS = RateLimitItemPerMinute(5, 15)
PER_ADDRESS = RateLimitItemPerMinute(20, 15)
# Compared against when the email is unknown, so a wrong email costs as much time as a wrong password.
_DECOY = generate_password_hash("decoy password for unknown accounts")


class Throttle:
    """Failed sign-ins per (email, address) and per address (shared through Redis when configured)."""

    def __init__(self, redis_url: str | None):
        storage = storage_from_string(redis_url or "memory://", key_prefix="tollgate-signin")
        self._windows = MovingWindowRateLimiter(storage)

    def blocked(self, email: str, address: str) -> bool:
        return any(not self._windows.test(limit, *key) for limit, key in self._keys(email, address))

    def failed(self, email: str, address: str) -> None:
        for limit, key in self._keys(email, address):
            self._windows.hit(limit, *key)

    @staticmethod
    def _keys(email: str, address: str) -> list[tuple[RateLimitItemPerMinute, tuple[str, ...]]]:
        return [
            (PER_ACCOUNT_AND_ADDRESS, ("account", email.strip().lower(), address)),
            (PER_ADDRESS, ("address", address)),
        ]


def authenticate(session: Session, email: str, password: str) -> AdminUser | None:
    user = session.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    if user is None:
        check_password_hash(_DECOY, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
