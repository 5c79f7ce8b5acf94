"""Who is calling: API key -> project, from an in-process snapshot of the configuration.

The snapshot holds keys, projects, settings, models, deployments and tiers. It is rebuilt when
the config stamp moves, checked at most once a second, so an admin change (a revoked key
included) reaches every worker within about a second without a query per request.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, select

from app import stamp
from app.crypto import unseal
from app.db import now_utc
from app.metering.accounts import Defaults
from app.metering.allowance import TierRules, rules_of
from app.metering.pricing import Price, resolve_price
from app.metering.quota import TierTerms
from app.models.api_key import ApiKey, hash_key
from app.models.catalog import Deployment, Model, ModelTierDefault
from app.models.project import Project
from app.models.tier import UsageTier
from app.proxy.errors import ProxyError
from app.proxy.providers.deployment import DeploymentInfo


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    model_tier: str
    price: Price | None
    deployments: tuple[DeploymentInfo, ...]


@dataclass(frozen=True)
class TierInfo:
    """What the proxy needs of a tier version. A locked version (one that has had customers) never
    changes (SPEC 4), so a locked TierInfo is true for as long as the process lives."""

    id: int
    key: str
    version: int
    terms: TierTerms
    rules: TierRules
    locked: bool = False


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    slug: str
    require_customer: bool
    low_balance_tokens: int | None
    defaults: Defaults
    models: dict[str, ModelInfo]
    tiers: dict[int, TierInfo]
    tier_defaults: dict[str, str]  # model tier -> model name
    litellm_webhook: bool = False  # customer calls owe LiteLLM's spend_tracked (SPEC 7.4)
    # Automatic shedding (SPEC 8); the manual level is read by each call's own statement instead.
    auto_shedding: bool = False
    capacity: int | None = None
    shedding_level: str = "off"  # as of the snapshot: for the health view and metrics only


# Provider kinds whose usage reports prompt-cache writes (priced dearer than input, SPEC 3).
CACHE_WRITERS = frozenset(("anthropic",))
MAX_UNKNOWN = 100_000  # digests remembered between two snapshot checks (about 6 MB at most)


class TierSource(Protocol):
    def fresh_tier(self, tier_id: int) -> TierInfo | None: ...


@dataclass(frozen=True)
class KeyInfo:
    """A key's own settings (LiteLLM's virtual keys, SPEC 6.1); None = no limit."""

    id: int
    project_id: int
    scope: str
    expires_at: datetime | None = None
    models: frozenset[str] | None = None  # the allow-list; None = every model of the project
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None
    budget: bool = False  # it has a $ budget: its calls hold part of it (the amount is read fresh)

    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.parallel is not None


@dataclass(frozen=True)
class Caller:
    project: ProjectInfo
    scope: str
    key_id: int | None
    source: TierSource
    key: KeyInfo | None = None

    def may_use(self, model: str) -> bool:
        return self.key is None or self.key.models is None or model in self.key.models

    def tier(self, tier_id: int | None) -> TierInfo | None:
        """The tier version a customer is on, as it stands (SPEC 3.5): the snapshot's only when it
        is locked, so cannot have changed since; else read from the database now. Never "no
        tier" for a version the snapshot has not seen yet."""
        if tier_id is None:
            return None
        cached = self.project.tiers.get(tier_id)
        if cached is not None and cached.locked:
            return cached
        return self.source.fresh_tier(tier_id)

    def terms_of(self, tier_id: int | None) -> TierTerms:
        tier = self.tier(tier_id)
        return tier.terms if tier else TierTerms()


@dataclass
class Snapshot:
    version: int
    keys: dict[str, KeyInfo] = field(default_factory=dict)  # by hash
    projects: dict[int, ProjectInfo] = field(default_factory=dict)
    by_slug: dict[str, int] = field(default_factory=dict)


def _deployment(d: Deployment, secret_key: str) -> DeploymentInfo:
    return DeploymentInfo(
        d.id,
        d.provider,
        d.base_url.rstrip("/"),
        unseal(secret_key, d.api_key),
        d.api_version,
        d.upstream_model,
        d.region,
        max(d.weight, 0),
        d.timeout_s,
    )


def _tier(t: UsageTier) -> TierInfo:
    return TierInfo(
        t.id,
        t.key,
        t.version,
        TierTerms(t.prepaid, t.hard_cap, t.default_reserve_tokens),
        rules_of(t),
        t.locked,
    )


def load_snapshot(engine: Engine, secret_key: str, webhook_url: str | None = None) -> Snapshot:
    """Read the whole configuration in one short transaction."""
    from sqlalchemy.orm import Session, selectinload

    with Session(engine) as session:
        snap = Snapshot(version=stamp.read(session.connection()))
        models_by_project: dict[int, dict[str, ModelInfo]] = {}
        for m in session.scalars(select(Model).options(selectinload(Model.deployments))):
            deployments = tuple(_deployment(d, secret_key) for d in m.deployments if d.enabled)
            price = resolve_price(m.input_nusd_per_mtok, m.output_nusd_per_mtok, m.name)
            if price is not None and any(d.provider in CACHE_WRITERS for d in deployments):
                price = replace(price, caches=True)
            models_by_project.setdefault(m.project_id, {})[m.name] = ModelInfo(
                m.id, m.name, m.model_tier, price, deployments
            )
        tiers_by_project: dict[int, dict[int, TierInfo]] = {}
        for t in session.scalars(select(UsageTier)):
            tiers_by_project.setdefault(t.project_id, {})[t.id] = _tier(t)
        defaults_by_project: dict[int, dict[str, str]] = {}
        for tier_name, project_id, model_name in session.execute(
            select(ModelTierDefault.model_tier, ModelTierDefault.project_id, Model.name).join(
                Model, Model.id == ModelTierDefault.model_id
            )
        ):
            defaults_by_project.setdefault(project_id, {})[tier_name] = model_name
        for p in session.scalars(select(Project)):
            tiers = tiers_by_project.get(p.id, {})
            default_tier = tiers.get(p.default_tier_id) if p.default_tier_id is not None else None
            snap.projects[p.id] = ProjectInfo(
                id=p.id,
                slug=p.slug,
                require_customer=p.require_customer,
                low_balance_tokens=p.low_balance_tokens,
                defaults=Defaults(
                    p.id,
                    p.new_customer_initial_tokens or 0,
                    p.default_tier_id,
                    p.default_shedding_tier,
                    tuple(p.default_allowed_regions or ()),
                    default_tier.rules if default_tier else None,
                ),
                models=models_by_project.get(p.id, {}),
                tiers=tiers,
                auto_shedding=p.auto_shedding,
                capacity=p.capacity,
                shedding_level=p.shedding_level,
                tier_defaults=defaults_by_project.get(p.id, {}),
                litellm_webhook=bool(p.litellm_webhook_url or webhook_url),
            )
            snap.by_slug[p.slug] = p.id
        for k in session.scalars(
            select(ApiKey).where(ApiKey.revoked_at.is_(None), ApiKey.blocked.is_(False))
        ):
            snap.keys[k.key_hash] = key_info(k)
    return snap


def key_info(k: ApiKey) -> KeyInfo:
    return KeyInfo(
        k.id,
        k.project_id,
        k.scope,
        k.expires_at,
        frozenset(k.models) if k.models else None,
        k.rpm_limit,
        k.tpm_limit,
        k.max_parallel_requests,
        k.max_budget_nusd is not None,
    )


class SnapshotCache:
    """The process's current snapshot, reloaded when the config stamp moves."""

    def __init__(
        self,
        engine: Engine,
        secret_key: str,
        master_key: str | None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
        webhook_url: str | None = None,
    ):
        self.engine = engine
        self.webhook_url = webhook_url  # LiteLLM's WEBHOOK_URL: every project's unless it names its own
        self.secret_key = secret_key
        self.master_key = master_key
        self.clock = clock
        self.interval = interval
        self._snap: Snapshot | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        # Versions read from the database since the snapshot was loaded; immutable once locked.
        self._locked_tiers: dict[int, TierInfo] = {}
        # Key digests the database did not know at the last look, forgotten at every snapshot
        # check (at most a second): a flood of made-up keys costs one query per key per second.
        self._unknown: set[str] = set()

    def fresh_tier(self, tier_id: int) -> TierInfo | None:
        """A tier version read from the database (the snapshot has not seen it, or saw it while it
        could still be edited). Locked versions are kept: they never change."""
        kept = self._locked_tiers.get(tier_id)
        if kept is not None:
            return kept
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            row = session.get(UsageTier, tier_id)
            tier = _tier(row) if row is not None else None
        if tier is not None and tier.locked:
            self._locked_tiers[tier_id] = tier
        return tier

    def current(self) -> Snapshot:
        now = self.clock()
        if self._snap is not None and now - self._checked < self.interval:
            return self._snap
        with self._lock:
            if self._snap is None or now - self._checked >= self.interval:
                self._refresh()
                self._checked = now
                self._unknown = set()
        assert self._snap is not None
        return self._snap

    def _refresh(self) -> None:
        with self.engine.connect() as conn:
            version = stamp.read(conn)
        if self._snap is None or version != self._snap.version:
            self._snap = load_snapshot(self.engine, self.secret_key, self.webhook_url)
            # The new snapshot holds every version locked so far. An id may name another version
            # after a delete (SQLite reuses the highest rowid), and a delete moves the stamp.
            self._locked_tiers = {}

    def invalidate(self) -> None:
        self._checked = float("-inf")

    def is_master(self, raw_key: str) -> bool:
        master = self.master_key
        return master is not None and hmac.compare_digest(raw_key.encode(), master.encode())

    def authenticate(self, raw_key: str | None, project_slug: str | None) -> Caller:
        """Key -> caller; the master key acts as admin on the project named by the header."""
        if not raw_key:
            raise ProxyError(
                "invalid_api_key",
                "Missing API key. Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
            )
        snap = self.current()
        if self.is_master(raw_key):
            project_id = snap.by_slug.get(project_slug or "default")
            if project_id is None:
                raise ProxyError(
                    "invalid_api_key", f"Unknown project {project_slug!r} in X-Tollgate-Project."
                )
            return Caller(snap.projects[project_id], "admin", None, self)
        digest = hash_key(raw_key)
        found = snap.keys.get(digest) or self._new_key(digest)
        if found is None or found.project_id not in snap.projects:
            raise ProxyError(
                "invalid_api_key", "Invalid API key: it is unknown, blocked or has been revoked."
            )
        if found.expires_at is not None and found.expires_at <= now_utc():
            raise ProxyError("invalid_api_key", "Invalid API key: it has expired.")
        return Caller(snap.projects[found.project_id], found.scope, found.id, self, found)

    def _new_key(self, digest: str) -> KeyInfo | None:
        """A key the snapshot does not hold: made since it loaded (LiteLLM's scripts call with a key
        right after /key/generate), else unknown. One indexed read, remembered as unknown until the
        next snapshot check."""
        from sqlalchemy.orm import Session

        if digest in self._unknown:
            return None
        with Session(self.engine) as session:
            row = session.scalar(
                select(ApiKey).where(
                    ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None), ApiKey.blocked.is_(False)
                )
            )
        if row is None:
            if len(self._unknown) < MAX_UNKNOWN:
                self._unknown.add(digest)
            return None
        return key_info(row)
