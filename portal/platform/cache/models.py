"""The cache's one table, ``cache_entries``: a JSON value per key, fresh until ``expiresAt`` and
kept, stale, until ``staleUntil`` (stale-while-revalidate, ``portal.platform.cache.services``).

Where it departs from the data conventions, on purpose:

- **UNLOGGED**: no write-ahead log, so a write costs little; after a crash PostgreSQL empties
  the table, which for a cache only means a cold start. It is not copied to streaming
  replicas either (nothing reads it there).
- **The key is the primary key**, with no UUID ``id``: a hit is one lookup in one index, and a
  write maintains that one index only. The key is ``text COLLATE "C"``, so a prefix
  (``LIKE 'catalog:%'``) is a range of that same index, and comparisons are bytewise.
- **No audit trigger** (``__audited__ = False``): entries are derived data, rewritten on every
  miss; the trail would double each write and copy users' private values into ``audit_log``.
- No index on ``staleUntil``: only the clean-up job filters on it, once a minute, and the table
  stays small because of that job; an index would cost every write instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Model
from portal.db.base import utcnow

#: Longest key the table takes; ``services`` hashes longer parts into a digest below it.
MAX_KEY_LENGTH = 512


class CacheEntry(Model):
    __tablename__ = "cache_entries"
    __audited__ = False

    #: ``<name>:shared[:parts]`` or ``<name>:<user uuid>[:parts]`` (``services.shared_key`` and
    #: ``services.private_key`` make them; nothing else should).
    key: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    #: Plain JSON: Decimal amounts are stored as their exact strings (``services``).
    value: Mapped[Any] = mapped_column(JSONB)
    #: Fresh until then; a plain ``get`` misses after it.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Served stale while one caller recomputes until then; the clean-up job deletes after it.
    stale_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 server_default=func.now())
    #: When the value was last written.
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 server_default=func.now(), onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(f"char_length(key) BETWEEN 1 AND {MAX_KEY_LENGTH}", name="key_length"),
        CheckConstraint('"staleUntil" >= "expiresAt"', name="stale_after_expiry"),
        {"prefixes": ["UNLOGGED"]},
    )
