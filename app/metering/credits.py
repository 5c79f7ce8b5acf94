"""Balance changes that are not metered usage (SPEC 5.4): every one is an immutable ledger entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Invalid, NotFound
from app.events import recorder
from app.metering.quota import customers, ledger, tiers

MAX_TOKENS = 10**15  # one change
MAX_BALANCE = 10**18  # a balance (BIGINT holds 9.2e18; metered usage only lowers it)


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str
    amount: int
    balance_after: int
    source: str
    reason: str
    created_at: datetime


def change_balance(
    conn: Connection,
    customer_pk: int,
    *,
    kind: str,
    source: str,
    reason: str,
    now: datetime,
    amount: int | None = None,
    target: int | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    """Add `amount` or set the balance to `target`, with its ledger entry, in the caller's transaction."""
    for name, value in (("amount", amount), ("target", target)):
        if value is not None and abs(value) > MAX_TOKENS:
            raise Invalid(f"{name} must be at most {MAX_TOKENS} tokens", "amount")
    row = _locked(
        conn, customer_pk, customers.c.token_balance, customers.c.project_id, customers.c.external_id
    )
    delta = amount if target is None else target - row.token_balance
    assert delta is not None
    after = row.token_balance + delta
    _refuse_impossible(conn, customer_pk, after, delta)
    conn.execute(update(customers).where(customers.c.id == customer_pk).values(token_balance=after))
    try:
        entry_id = conn.execute(
            ledger.insert()
            .values(
                project_id=row.project_id,
                customer_id=customer_pk,
                kind=kind,
                amount=delta,
                balance_after=after,
                source=source,
                reason=reason,
                idempotency_key=idempotency_key,
                created_at=now,
            )
            .returning(ledger.c.id)
        ).scalar_one()
    except IntegrityError as exc:
        raise Conflict("this idempotency key was already used for this customer", "Idempotency-Key") from exc
    if delta > 0:
        recorder.record(
            conn,
            project_id=row.project_id,
            type="tokens.credited",
            now=now,
            customer_pk=customer_pk,
            customer_external_id=row.external_id,
            data={"customer_id": row.external_id, "amount": delta, "balance": after, "kind": kind},
        )
    return Entry(entry_id, kind, delta, after, source, reason, now)


def _locked(conn: Connection, customer_pk: int, *columns):
    """The customer's row, read by a statement that writes: it takes the row lock (PostgreSQL) or
    the write lock (SQLite) first, so what is computed from the balance holds until commit."""
    row = conn.execute(
        update(customers)
        .where(customers.c.id == customer_pk)
        .values(token_balance=customers.c.token_balance)
        .returning(*columns)
    ).first()
    if row is None:
        raise NotFound("no such customer", "customer_id")
    return row


def _refuse_impossible(conn: Connection, customer_pk: int, after: int, delta: int) -> None:
    """No change may leave a balance the column cannot hold, nor a prepaid hard-capped one below 0
    (SPEC 11.2 holds for admin and API changes as it does for metered usage)."""
    if abs(after) > MAX_BALANCE:
        raise Invalid(
            f"the balance would be {after:,}, past the {MAX_BALANCE:,} tokens a balance holds", "amount"
        )
    if after >= 0 or delta >= 0:
        return
    capped = conn.execute(
        select(tiers.c.prepaid & tiers.c.hard_cap)
        .select_from(customers.join(tiers, tiers.c.id == customers.c.tier_id))
        .where(customers.c.id == customer_pk)
    ).scalar()
    if capped:
        raise Invalid(
            f"this would leave the balance at {after:,}: a prepaid tier with hard_cap never goes below 0 "
            "(set the balance to 0 instead)",
            "amount",
        )


def take_back(
    conn: Connection,
    customer_pk: int,
    tokens: int,
    *,
    source: str,
    reason: str,
    now: datetime,
    idempotency_key: str | None = None,
) -> tuple[Entry | None, int]:
    """Take up to `tokens` back (a `refund` entry): all of them, except from a prepaid hard-capped
    balance, which gives up only what it holds beyond the holds of calls in flight (those settle
    against it, as SPEC 5.2's settlement does; SPEC 7.5). Returns the entry (None when nothing could
    be taken) and how many tokens were taken."""
    row = _locked(
        conn, customer_pk, customers.c.token_balance, customers.c.reserved_tokens, customers.c.tier_id
    )
    capped = conn.execute(
        select(tiers.c.prepaid & tiers.c.hard_cap).where(tiers.c.id == row.tier_id)
    ).scalar()
    taken = min(tokens, max(row.token_balance - row.reserved_tokens, 0)) if capped else tokens
    if taken <= 0:
        return None, 0
    entry = change_balance(
        conn,
        customer_pk,
        kind="refund",
        amount=-taken,
        source=source,
        reason=reason,
        now=now,
        idempotency_key=idempotency_key,
    )
    return entry, taken


def add_or_set(
    conn: Connection,
    customer_pk: int,
    mode: str,
    tokens: int,
    *,
    source: str,
    reason: str,
    now: datetime,
    idempotency_key: str | None = None,
) -> Entry:
    """An operator's change: `add` tokens (an `adjustment`) or `set` the balance (a `set_balance`)."""
    if mode == "set":
        return change_balance(
            conn,
            customer_pk,
            kind="set_balance",
            target=tokens,
            source=source,
            reason=reason,
            now=now,
            idempotency_key=idempotency_key,
        )
    return change_balance(
        conn,
        customer_pk,
        kind="adjustment",
        amount=tokens,
        source=source,
        reason=reason,
        now=now,
        idempotency_key=idempotency_key,
    )
