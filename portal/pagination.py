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


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The position a cursor names, or None for a missing or malformed cursor (first page)."""
    if not cursor or len(cursor) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            return None
        return created_at, uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        return None


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
