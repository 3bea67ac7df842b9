"""Fixed-window rate limits kept in ``rate_limits``.

One UPSERT both counts and, when the window has passed, restarts it, so concurrent requests
never lose a count and no job is needed to expire windows. Each counter also remembers when it
was last hit, so a caller can pace attempts (``claim``) instead of only refusing past a limit.

The login throttle (``portal.accounts``) and the API (``limit``: per token, per user and per
address at once, one statement) count on the same table and the same UPSERT.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from portal.db import db
from portal.db.base import utcnow
from portal.platform.gateway.models import RateLimit


@dataclass(frozen=True)
class Window:
    count: int
    window_start: datetime
    window_seconds: int
    #: When the key was last hit (or its turn last claimed).
    last_at: datetime | None = None

    def seconds_since_last(self) -> float:
        return (utcnow() - (self.last_at or self.window_start)).total_seconds()

    @property
    def retry_after(self) -> int:
        end = self.window_start + timedelta(seconds=self.window_seconds)
        return max(1, int((end - utcnow()).total_seconds()) + 1)


def _now():
    """The time of the statement, not of its transaction (``now()``): a window is measured against
    the clock the callers compare it with (``utcnow``), however long the transaction has run."""
    return func.statement_timestamp()


def hit(key: str, window_seconds: int) -> Window:
    """Count one event against ``key`` and return the window after counting."""
    return hit_many([key], window_seconds)[key]


def hit_many(keys: list[str], window_seconds: int) -> dict[str, Window]:
    """Count one event against each of ``keys`` (one multi-row UPSERT, in key order so two
    requests lock the rows alike) and return each window after counting."""
    now = _now()
    expired = RateLimit.window_start <= now - timedelta(seconds=window_seconds)
    stmt = insert(RateLimit).values([
        {"key": key, "window_start": now, "count": 1, "id": func.gen_random_uuid(), "created_at": now,
         "updated_at": now} for key in sorted(set(keys))])
    stmt = stmt.on_conflict_do_update(
        index_elements=[RateLimit.key],
        set_={
            RateLimit.count: case((expired, 1), else_=RateLimit.count + 1),
            RateLimit.window_start: case((expired, now), else_=RateLimit.window_start),
            RateLimit.updated_at: now,
        },
    ).returning(RateLimit.key, RateLimit.count, RateLimit.window_start, RateLimit.updated_at)
    return {key: Window(count, start, window_seconds, last) for key, count, start, last in db.session.execute(stmt)}


@dataclass(frozen=True)
class Decision:
    """The answer of ``limit``: whether the request may go on, and what the ``RateLimit-*``
    headers say (of the counter nearest its limit)."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the counter that decided starts a new window.
    reset: int

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            headers["Retry-After"] = str(self.reset)
        return headers


def limit(limits: dict[str, int], window_seconds: int) -> Decision:
    """Count one request against every key of ``limits`` (key: the most requests its window
    allows) in one statement. Refused when any key went past its limit; the headers describe
    the key with the fewest requests left (on a refusal, the one that refused with the longest
    wait)."""
    windows = hit_many(list(limits), window_seconds)
    over = [key for key, most in limits.items() if windows[key].count > most]
    if over:
        key = max(over, key=lambda k: windows[k].retry_after)
        return Decision(False, limits[key], 0, windows[key].retry_after)
    key = min(limits, key=lambda k: (limits[k] - windows[k].count, -windows[k].retry_after))
    return Decision(True, limits[key], limits[key] - windows[key].count, windows[key].retry_after)


def peek(key: str, window_seconds: int) -> Window | None:
    """The current window for ``key``, or None when it is empty or has passed."""
    row = db.session.execute(
        select(RateLimit.count, RateLimit.window_start, RateLimit.updated_at).where(
            RateLimit.key == key,
            RateLimit.window_start > _now() - timedelta(seconds=window_seconds),
        )
    ).one_or_none()
    return Window(row.count, row.window_start, window_seconds, row.updated_at) if row else None


def peek_many(keys: list[str], window_seconds: int) -> dict[str, Window]:
    return peek_windows(dict.fromkeys(keys, window_seconds))


def peek_windows(windows: dict[str, int]) -> dict[str, Window]:
    """The live windows of several keys, each with its own length, in one statement."""
    if not windows:
        return {}
    rows = db.session.execute(
        select(RateLimit.key, RateLimit.count, RateLimit.window_start, RateLimit.updated_at,
               _now().label("now")).where(
            RateLimit.key.in_(list(windows)),
            RateLimit.window_start > _now() - timedelta(seconds=max(windows.values())),
        )
    )
    found = {}
    for r in rows:
        seconds = windows[r.key]
        if r.window_start > r.now - timedelta(seconds=seconds):
            found[r.key] = Window(r.count, r.window_start, seconds, r.updated_at)
    return found


def claim(key: str, window_seconds: int, gap_seconds: float) -> bool:
    """Take the next turn of ``key``: true, and the turn is marked taken now, when at least
    ``gap_seconds`` have passed since its last hit or turn; false when another request took it
    first or it is too soon. One conditional UPDATE, so of concurrent claims only one wins."""
    claimed = db.session.execute(
        update(RateLimit)
        .where(RateLimit.key == key,
               RateLimit.window_start > _now() - timedelta(seconds=window_seconds),
               RateLimit.updated_at <= _now() - timedelta(seconds=gap_seconds))
        .values(updated_at=_now())
        .returning(RateLimit.id)
        .execution_options(synchronize_session=False)
    ).first()
    return claimed is not None


def reset(key: str) -> None:
    db.session.execute(delete(RateLimit).where(RateLimit.key == key))


def reset_prefix(prefix: str) -> None:
    """Forget every key that starts with ``prefix`` (taken literally: LIKE's wildcards escaped)."""
    if not prefix:
        raise ValueError("an empty prefix would forget every key")
    db.session.execute(delete(RateLimit).where(RateLimit.key.startswith(prefix, autoescape=True)))
