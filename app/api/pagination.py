"""Cursor pagination: every list is `{"data": [...], "next_cursor": "..." | null}` (SPEC 6)."""

from __future__ import annotations

import base64
import binascii

from marshmallow import Schema, fields, validate

from app.api.errors import ApiError


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None)


def encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def after(cursor: str | None) -> int:
    """The id a cursor points past (0 for the first page); a malformed cursor is a 400."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "id" or not value.isdigit():
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "cursor is not one this API gave out", param="cursor") from exc


def page(rows: list, limit: int, key=lambda row: row.id) -> tuple[list, str | None]:
    """`rows` were fetched with limit + 1: the extra row means there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode(key(rows[-1])) if more and rows else None


def before(cursor: str | None) -> int | None:
    """For newest-first lists: the id a cursor points below (None for the first page)."""
    return None if cursor is None else after(cursor)


def newest_first(stmt, column, args: dict) -> tuple[list, str | None]:
    """One page of `stmt`'s rows, newest (highest id) first, from the cursor on."""
    from app.extensions import db

    if (below := before(args["cursor"])) is not None:
        stmt = stmt.where(column < below)
    rows = list(db.session.scalars(stmt.order_by(column.desc()).limit(args["limit"] + 1)))
    return page(rows, args["limit"])
