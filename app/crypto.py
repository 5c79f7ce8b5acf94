"""Encryption at rest for provider and integration secrets, keyed by the app's secret key."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

PREFIX = "fernet:"


class SecretError(ValueError):
    """A stored secret cannot be decrypted (the secret key changed?)."""


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"tollgate/secrets/v1:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret_key: str, plaintext: str | None) -> str | None:
    if plaintext is None:
        return None
    return PREFIX + _fernet(secret_key).encrypt(plaintext.encode()).decode()


def unseal(secret_key: str, stored: str | None) -> str | None:
    if stored is None:
        return None
    if not stored.startswith(PREFIX):
        raise SecretError("stored secret is not encrypted")
    try:
        return _fernet(secret_key).decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise SecretError("stored secret cannot be decrypted with this TOLLGATE_SECRET_KEY") from exc
