"""The proxy's per-process state (SPEC 3; DESIGN "The hot path"): the engine, the config snapshot,
the pooled upstream client, the shared health view, the rate limiter, and the counters it keeps.
One per process, made by the app factory; the views, the relay and the probes reach it here."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import Engine
from werkzeug.datastructures import Headers

from app.db import now_utc
from app.proxy.auth import Caller, SnapshotCache
from app.proxy.health import Health
from app.proxy.keyuse import KeyUse
from app.proxy.levels import LevelWatch
from app.proxy.ratelimit import Limiter
from app.proxy.refusals import RefusalCounter
from app.upstream.client import Client


@dataclass
class Gateway:
    """What the proxy keeps per process: the engine, the config snapshot, the pooled client, health."""

    engine: Engine
    cache: SnapshotCache
    client: Client
    health: Health
    limiter: Limiter
    key_use: KeyUse
    refusals: RefusalCounter
    levels: LevelWatch
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], datetime] = now_utc  # tests freeze it

    def caller(self, headers: Headers) -> Caller:
        """The request's caller, by its key (401 if unknown or revoked); notes the key's use."""
        caller = self.cache.authenticate(presented_key(headers), headers.get("X-Tollgate-Project"))
        self.key_use.note(caller.key_id, self.clock())
        return caller


def gateway() -> Gateway:
    return current_app.extensions["tollgate.gateway"]


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None
