"""Settings from TOLLGATE_* environment variables (SPEC 2).

Infrastructure and secrets live in the environment; project settings live in the database.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SESSION_LIFETIME = timedelta(days=14)


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; the process refuses to start."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    instance_path: Path
    redis_url: str | None = None
    master_key: str | None = None
    config_file: str | None = None
    admin_email: str | None = None
    admin_password: str | None = None
    bind: str = "127.0.0.1:8000"
    max_body_bytes: int = 8 * 1024 * 1024
    webhook_url: str | None = None
    stripe_api_base: str | None = None  # None: Stripe's own API
    db_pool_size: int = 32
    secure_cookies: bool = False
    public_url: str | None = None  # where people reach this server; None: the address each request used
    extra: dict = field(default_factory=dict)

    def flask_config(self) -> dict:
        return {
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(self.database_url, self.db_pool_size),
            "MAX_CONTENT_LENGTH": self.max_body_bytes,
            # A form's CSRF token lives as long as the signed-in session it is bound to: a tab left
            # open over lunch still saves (an hour's limit lost people's typing).
            "WTF_CSRF_TIME_LIMIT": None,
            # Scripts cannot read the admin's cookies, other sites' forms do not carry them, and
            # over HTTPS (TOLLGATE_SECURE_COOKIES) plain HTTP never sees them.
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.secure_cookies,
            # The session cookie's signature carries its time, and a cookie older than this is
            # refused by the server whatever the browser kept: "Keep me signed in" is a permanent
            # session, re-signed on every visit, so it lasts 14 days from the last one.
            "PERMANENT_SESSION_LIFETIME": SESSION_LIFETIME,
            "TOLLGATE": self,
            **self.extra,
        }


def engine_options(url: str, pool_size: int) -> dict:
    """Pool sized to the real concurrency (overflow connections churn: a PostgreSQL backend each).

    No pre-ping: it would cost a round trip per checkout on the hot path; a connection broken by
    a database restart is detected on use and the pool is invalidated (pool_recycle bounds age).
    """
    if url.startswith("sqlite"):
        return {
            "connect_args": {"timeout": 30, "check_same_thread": False},
            "pool_size": pool_size,
            "max_overflow": pool_size,
        }
    return {"pool_size": pool_size, "max_overflow": pool_size, "pool_recycle": 1800}


def load(env: dict[str, str] | None = None, **overrides) -> Settings:
    """Read the environment, fill in the defaults, and refuse settings that are unsafe."""
    env = dict(os.environ if env is None else env)
    instance = Path(env.get("TOLLGATE_INSTANCE_PATH", ROOT / "instance"))
    instance.mkdir(parents=True, exist_ok=True)
    url = env.get("TOLLGATE_DATABASE_URL") or f"sqlite:///{instance / 'tollgate.db'}"
    values = dict(
        database_url=_normalise_db_url(url),
        secret_key=env.get("TOLLGATE_SECRET_KEY") or _instance_secret(instance),
        instance_path=instance,
        redis_url=env.get("TOLLGATE_REDIS_URL") or None,
        master_key=env.get("TOLLGATE_MASTER_KEY") or None,
        config_file=env.get("TOLLGATE_CONFIG") or None,
        admin_email=env.get("TOLLGATE_ADMIN_EMAIL") or None,
        admin_password=env.get("TOLLGATE_ADMIN_PASSWORD") or None,
        bind=env.get("TOLLGATE_BIND", "127.0.0.1:8000"),
        max_body_bytes=_max_body(env.get("TOLLGATE_MAX_BODY_MB", "8")),
        webhook_url=env.get("WEBHOOK_URL") or None,
        stripe_api_base=_base_url(env.get("TOLLGATE_STRIPE_API_BASE") or None, "TOLLGATE_STRIPE_API_BASE"),
        db_pool_size=_positive(env.get("TOLLGATE_DB_POOL_SIZE", "32"), "TOLLGATE_DB_POOL_SIZE"),
        secure_cookies=_flag(env.get("TOLLGATE_SECURE_COOKIES") or "false", "TOLLGATE_SECURE_COOKIES"),
        public_url=_base_url(env.get("TOLLGATE_PUBLIC_URL") or None, "TOLLGATE_PUBLIC_URL"),
    )
    values.update(overrides)
    settings = Settings(**values)
    _refuse_unsafe(settings)
    return settings


def _normalise_db_url(url: str) -> str:
    # Users paste Heroku-style URLs; SQLAlchemy needs the driver named to pick psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _instance_secret(instance: Path) -> str:
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _max_body(raw: str) -> int:
    try:
        mb = float(raw)
    except ValueError as exc:
        raise ConfigError(f"TOLLGATE_MAX_BODY_MB must be a number, got {raw!r}") from exc
    if not 0 < mb <= 1024:
        raise ConfigError("TOLLGATE_MAX_BODY_MB must be between 0 and 1024")
    return int(mb * 1024 * 1024)


def _positive(raw: str, name: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def _base_url(raw: str | None, name: str) -> str | None:
    if raw is not None and not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// address, got {raw!r}")
    return raw.rstrip("/") if raw else None


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return value == "true"


def _refuse_unsafe(settings: Settings) -> None:
    if len(settings.secret_key) < 32:
        raise ConfigError("TOLLGATE_SECRET_KEY must be at least 32 characters")
    if settings.master_key is not None and len(settings.master_key) < 16:
        raise ConfigError("TOLLGATE_MASTER_KEY must be at least 16 characters")
    if settings.admin_password is not None and len(settings.admin_password) < 8:
        raise ConfigError("TOLLGATE_ADMIN_PASSWORD must be at least 8 characters")
