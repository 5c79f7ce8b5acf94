"""Settings from the environment (SPEC 2): defaults, the generated secret key, refusals."""

from __future__ import annotations

import pytest

from app import config
from app.crypto import SecretError, seal, unseal


def test_defaults_and_secret_key_generated_once(tmp_path):
    first = config.load(env={"TOLLGATE_INSTANCE_PATH": str(tmp_path)})
    assert first.database_url == f"sqlite:///{tmp_path / 'tollgate.db'}"
    assert first.bind == "127.0.0.1:8000" and first.max_body_bytes == 8 * 1024 * 1024
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    again = config.load(env={"TOLLGATE_INSTANCE_PATH": str(tmp_path)})
    assert again.secret_key == first.secret_key and len(first.secret_key) >= 32


def test_postgres_urls_get_the_psycopg_driver(tmp_path):
    s = config.load(
        env={"TOLLGATE_INSTANCE_PATH": str(tmp_path), "TOLLGATE_DATABASE_URL": "postgres://u@h/db"}
    )
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert "pool_pre_ping" not in s.flask_config()["SQLALCHEMY_ENGINE_OPTIONS"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TOLLGATE_MASTER_KEY", "short", "MASTER_KEY"),
        ("TOLLGATE_SECRET_KEY", "too-short", "SECRET_KEY"),
        ("TOLLGATE_MAX_BODY_MB", "lots", "MAX_BODY_MB"),
        ("TOLLGATE_MAX_BODY_MB", "0", "MAX_BODY_MB"),
        ("TOLLGATE_ADMIN_PASSWORD", "1234", "ADMIN_PASSWORD"),
        ("TOLLGATE_DB_POOL_SIZE", "-3", "POOL_SIZE"),
    ],
)
def test_unsafe_settings_are_refused(tmp_path, name, value, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(env={"TOLLGATE_INSTANCE_PATH": str(tmp_path), name: value})


def test_provider_secrets_are_sealed_with_the_secret_key():
    stored = seal("k" * 40, "sk-live-123")
    assert stored.startswith("fernet:") and "sk-live-123" not in stored
    assert unseal("k" * 40, stored) == "sk-live-123"
    with pytest.raises(SecretError):
        unseal("other" * 10, stored)
