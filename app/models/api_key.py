"""API keys: stored as a SHA-256 hash, shown once."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, now_utc

SCOPES = ("proxy", "admin")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # LiteLLM's virtual-key settings (SPEC 6.1). Proxy keys only; None = no limit.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    models: Mapped[list | None] = mapped_column(JSON)  # allow-list; None or empty = every model
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSON)
    user_id: Mapped[str | None] = mapped_column(String(256))
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    # The key's own $ budget, counted exactly like a tier's: `budget_spend_nusd` is what the current
    # window (from `budget_start`) has spent, `reserved_nusd` what calls in flight hold.
    max_budget_nusd: Mapped[int | None] = mapped_column(BigInteger)
    budget_duration: Mapped[str | None] = mapped_column(String(16))
    budget_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_spend_nusd: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reserved_nusd: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reservation_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


def hash_key(raw: str) -> str:
    """Keys are long random secrets, so one SHA-256 is enough (no slow hash on the hot path)."""
    return hashlib.sha256(raw.encode()).hexdigest()
