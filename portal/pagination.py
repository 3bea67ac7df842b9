"""Keyset pagination on ``(createdAt, id)`` descending: stable and fast on any page,
unlike OFFSET, which reads and throws away every row before the page."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, tuple_

from portal.db import db


@dataclass
class Page:
    items: list
    next_cursor: str | None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def _pack(*parts) -> str:
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _unpack(cursor: str | None, count: int) -> list[str] | None:
    if not cursor or len(cursor) > 200:
        return None
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        return None
    return parts if len(parts) == count else None


def _position(stamp: str, row_id: str) -> tuple[datetime, uuid.UUID] | None:
    try:
        at = datetime.fromisoformat(stamp)
        return (at, uuid.UUID(row_id)) if at.tzinfo is not None else None
    except ValueError:
        return None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return _pack(created_at.isoformat(), row_id)


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The position a cursor names, or None for a missing or malformed cursor (first page)."""
    parts = _unpack(cursor, 2)
    return _position(*parts) if parts else None


def encode_ranked_cursor(rank: int, at: datetime, row_id: uuid.UUID) -> str:
    """A cursor for lists ordered by a small rank first (pending before decided), then time."""
    return _pack(rank, at.isoformat(), row_id)


def decode_ranked_cursor(cursor: str | None, ranks: int = 2) -> tuple[int, datetime, uuid.UUID] | None:
    """The ``(rank, time, id)`` a ranked cursor names, or None when missing or malformed."""
    parts = _unpack(cursor, 3)
    if not parts or parts[0] not in {str(r) for r in range(ranks)}:
        return None
    position = _position(parts[1], parts[2])
    return (int(parts[0]), *position) if position else None


def keyset_page(stmt: Select, created_col, id_col, cursor: str | None, size: int) -> Page:
    """One page of ``stmt`` newest first, after ``cursor``; one query (size + 1 rows)."""
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(created_col, id_col) < tuple_(*position))
    rows = list(db.session.scalars(stmt.order_by(created_col.desc(), id_col.desc()).limit(size + 1)))
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return Page(rows, next_cursor)
