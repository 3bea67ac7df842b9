"""The request log (``api_logs``), written off the request path.

The web layer calls ``record`` once a response is ready (every API request; page requests when
``sampled`` says so) and ``flush_if_due`` after the response has gone to the client. ``record``
only appends to a buffer in process memory; ``flush_if_due`` writes the buffer when it holds
``API_LOG_BATCH_SIZE`` entries or its oldest entry waited ``API_LOG_FLUSH_SECONDS``, in one
multi-row INSERT on a small connection pool of its own (outside the request's transaction, its
statements never count against a page). A failed write is logged and its entries dropped: the log
is a measurement, and a request never fails because of it. The buffer holds at most
``MAX_BUFFERED`` entries; past that the oldest go.

What a process still holds when it stops is lost (at most one batch or a few seconds of traffic).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import create_engine, delete, insert, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from portal.db import db
from portal.db.base import utcnow
from portal.platform.gateway.models import ApiLog

log = logging.getLogger(__name__)

#: Entries kept in memory at most, whatever the batch size (a database that is down for a
#: while must not grow the process without bound).
MAX_BUFFERED = 10_000


@dataclass(frozen=True)
class Entry:
    kind: str
    method: str
    route: str
    status: int
    duration_ms: int
    user_id: uuid.UUID | None
    token_id: uuid.UUID | None
    ip_address: str | None
    request_id: str
    created_at: datetime


class Buffer:
    """The entries of one process waiting to be written, and the engine that writes them."""

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque(maxlen=MAX_BUFFERED)
        self.oldest: float | None = None
        self.lock = threading.Lock()
        self.flushing = threading.Lock()
        self.engine: Engine | None = None
        self.pid: int | None = None
        self.dropped = 0


def sampled(rate: float, draw=random.random) -> bool:
    """Whether one page request is logged at sampling ``rate`` (0: none, 1: all)."""
    return rate >= 1 or (rate > 0 and draw() < rate)


def record(buffer: Buffer, entry: Entry) -> None:
    with buffer.lock:
        if len(buffer.entries) == MAX_BUFFERED:
            buffer.dropped += 1
        buffer.entries.append(entry)
        if buffer.oldest is None:
            buffer.oldest = time.monotonic()


def due(buffer: Buffer, batch_size: int, flush_seconds: float) -> bool:
    with buffer.lock:
        return bool(buffer.entries) and (len(buffer.entries) >= batch_size or buffer.oldest is None
                                         or time.monotonic() - buffer.oldest >= flush_seconds)


def _take(buffer: Buffer) -> list[Entry]:
    with buffer.lock:
        taken = list(buffer.entries)
        buffer.entries.clear()
        buffer.oldest = None
    return taken


def _engine(buffer: Buffer, database_url: str) -> Engine:
    """The writer's engine, made on first use in each process (so after a fork): one connection,
    autocommit, a short statement timeout."""
    if buffer.pid != os.getpid():
        with buffer.lock:
            if buffer.pid != os.getpid():
                buffer.engine = create_engine(make_url(database_url), isolation_level="AUTOCOMMIT",
                                              pool_size=1, max_overflow=1, pool_pre_ping=True,
                                              connect_args={"options": "-c statement_timeout=5000"})
                buffer.pid = os.getpid()
    return buffer.engine


def flush(buffer: Buffer, database_url: str) -> int:
    """Write every buffered entry in one INSERT; returns how many were written (0 on failure,
    which is logged and never raised)."""
    with buffer.flushing:  # one flush at a time per process; the others find the buffer empty
        entries = _take(buffer)
        if not entries:
            return 0
        try:
            with _engine(buffer, database_url).connect() as conn:
                # One INSERT ... VALUES (...), (...): no RETURNING, which row-level security would
                # check against the read policy (only admins and system actors read the log).
                conn.execute(insert(ApiLog.__table__).values([_row(e) for e in entries]))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not write %d request log entries: %s", len(entries),
                        str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200])
            return 0
    return len(entries)


def flush_if_due(buffer: Buffer, database_url: str, batch_size: int, flush_seconds: float) -> int:
    if not due(buffer, batch_size, flush_seconds):
        return 0
    return flush(buffer, database_url)


def _row(entry: Entry) -> dict:
    """The entry as the table's parameters (keyed by each column's key)."""
    columns = ApiLog.__mapper__.columns
    return {columns[attr].key: value for attr, value in asdict(entry).items()}


def drop_older_than(days: int) -> int:
    """Delete the log rows older than ``days`` (the clean-up job); returns how many went."""
    cutoff = utcnow() - timedelta(days=days)
    return db.session.execute(delete(ApiLog).where(ApiLog.created_at < cutoff)).rowcount
