"""Fixed-window rate limits kept in ``rate_limits``.

One UPSERT both counts and, when the window has passed, restarts it, so concurrent requests
never lose a count and no job is needed to expire windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from portal.db import db
from portal.db.base import utcnow
from portal.platform.gateway.models import RateLimit


@dataclass(frozen=True)
class Window:
    count: int
    window_start: datetime
    window_seconds: int

    @property
    def retry_after(self) -> int:
        end = self.window_start + timedelta(seconds=self.window_seconds)
        return max(1, int((end - utcnow()).total_seconds()) + 1)


def hit(key: str, window_seconds: int) -> Window:
    """Count one event against ``key`` and return the window after counting."""
    now = func.now()
    expired = RateLimit.window_start <= now - timedelta(seconds=window_seconds)
    stmt = insert(RateLimit).values(key=key, window_start=now, count=1, id=func.gen_random_uuid(),
                                    created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RateLimit.key],
        set_={
            RateLimit.count: case((expired, 1), else_=RateLimit.count + 1),
            RateLimit.window_start: case((expired, now), else_=RateLimit.window_start),
            RateLimit.updated_at: now,
        },
    ).returning(RateLimit.count, RateLimit.window_start)
    count, start = db.session.execute(stmt).one()
    return Window(count, start, window_seconds)


def peek(key: str, window_seconds: int) -> Window | None:
    """The current window for ``key``, or None when it is empty or has passed."""
    row = db.session.execute(
        select(RateLimit.count, RateLimit.window_start).where(
            RateLimit.key == key,
            RateLimit.window_start > func.now() - timedelta(seconds=window_seconds),
        )
    ).one_or_none()
    return Window(row.count, row.window_start, window_seconds) if row else None


def peek_many(keys: list[str], window_seconds: int) -> dict[str, Window]:
    rows = db.session.execute(
        select(RateLimit.key, RateLimit.count, RateLimit.window_start).where(
            RateLimit.key.in_(keys),
            RateLimit.window_start > func.now() - timedelta(seconds=window_seconds),
        )
    )
    return {r.key: Window(r.count, r.window_start, window_seconds) for r in rows}


def reset(key: str) -> None:
    db.session.execute(delete(RateLimit).where(RateLimit.key == key))
