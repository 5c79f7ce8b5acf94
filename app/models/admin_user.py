"""People who sign in to the web admin, and the sign-in attempts that throttle guessing."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

ROLES = ("owner", "viewer")


class AdminUser(UserMixin, Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="owner")
    # Part of the login identity in every session cookie: bumped on sign-out and
    # password change, so every cookie issued before stops working (SPEC 10).
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    def get_id(self) -> str:
        """The login identity Flask-Login keeps in the session."""
        return f"{self.id}:{self.session_version}"

    def has_identity(self, identity: str) -> bool:
        """Whether a cookie's identity is this admin's current one (not from before a sign-out or a
        password change)."""
        return identity == self.get_id()


class SignInAttempt(Base):
    """One sign-in attempt counted against a throttle window, when no Redis is configured (shared
    by every worker through the database). A successful sign-in removes its account's rows."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (Index("ix_sign_in_attempts_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))  # a SHA-256 hex digest of the throttle key
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
