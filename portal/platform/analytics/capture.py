"""Recording events: after the commit, in batches, never at the user's expense.

``record(name, user_id, **properties)`` is what a receiver of a domain event calls
(``listeners``). Nothing is written then:

1. The event waits in the session's ``info`` for the transaction to commit. A rollback drops it
   (nothing happened), so the log never shows an enrolment that did not take place.
2. On commit it moves to the process's buffer.
3. The buffer is written in one multi-row ``INSERT`` (``flush``): at the end of the request
   (``end_request``, called by the app factory once the response is made), or, outside any
   request (a job, a command), once the committed transaction has returned its connection to
   the pool: never a second connection held beside the first.

The write runs on a connection of its own, in a transaction of its own, after the request's
transaction has ended, so it can neither fail nor roll back the user's work, and it holds no
lock of theirs. A failed write is logged and its batch dropped: analytics are not worth a retry
loop in a web process. An event the test suite's bound connection records is written on that
connection, in a savepoint, so it rolls back with the test.

``ANALYTICS_CAPTURE`` (configuration) turns recording off; the bench measures a page both ways.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from flask import current_app, g, has_app_context
from sqlalchemy import event, insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from portal.db import db
from portal.db.base import utcnow
from portal.platform.analytics.models import Event

log = logging.getLogger(__name__)

#: ``Session.info`` key of the events waiting for their transaction's commit.
_PENDING = "analytics_events"
#: ``Session.info`` flag: events committed outside a request, to write when the transaction ends.
_FLUSH_DUE = "analytics_flush_due"
#: Rows per INSERT statement; a larger buffer is written in several.
BATCH_ROWS = 500
#: The most events a process keeps waiting; past it the oldest go (a write failing for long).
MAX_BUFFER = 10_000

_buffer: list[dict] = []
_buffer_lock = threading.Lock()
#: A request's events wait for its end instead of being written at commit (``_request_hold``).
def _request_hold() -> dict | None:
    """The running request's hold on its events (``begin_request``), kept on the request's own
    app context (``g``): a request whose end has not run yet (a streamed body still being read)
    holds nothing of the work that runs after it in the same thread."""
    return g.get("analytics_hold") if has_app_context() else None


def enabled() -> bool:
    return has_app_context() and bool(current_app.config.get("ANALYTICS_CAPTURE", True))


def _jsonable(value: object) -> object:
    """Decimals exactly (as positional text), ids and times as text; the rest as given."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _row(name: str, user_id, properties: dict) -> dict:
    hold = _request_hold()
    source = hold["session_id"] if hold else None
    session_id = source() if source is not None else None
    return {"id": uuid.uuid4(), "occurred_at": utcnow(), "name": name,
            "user_id": uuid.UUID(str(user_id)) if user_id else None,
            "session_id": str(session_id)[:64] if session_id else None,
            "properties": {key: _jsonable(value) for key, value in properties.items() if value is not None}}


def record(name: str, user_id, *, committed: bool = False, **properties) -> None:
    """Record that ``user_id`` did ``name`` (with ``properties``), once the current transaction
    commits; with ``committed``, the cause is committed already (an after-commit event)."""
    if not enabled():
        return
    row = _row(name, user_id, properties)
    if committed:
        _to_buffer([row])
        if _request_hold() is None:
            db.session().info[_FLUSH_DUE] = True
        return
    session = db.session()
    if not session.in_transaction():
        session.begin()  # so that a rollback before the commit drops the event with the rest
    session.info.setdefault(_PENDING, []).append(row)


def _to_buffer(rows: list[dict]) -> None:
    with _buffer_lock:
        _buffer.extend(rows)
        if len(_buffer) > MAX_BUFFER:
            dropped = len(_buffer) - MAX_BUFFER
            del _buffer[:dropped]
            log.warning("analytics buffer full: %d oldest events dropped", dropped)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    _to_buffer(pending)
    if _request_hold() is None:
        session.info[_FLUSH_DUE] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction) -> None:
    """Outside a request, write once the committed transaction has given its connection back
    (so a process never holds two of the pool's connections at once, however many threads)."""
    if transaction.parent is None and session.info.pop(_FLUSH_DUE, False):
        flush(session)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


def begin_request(session_id: Callable[[], object]) -> None:
    """For the app factory, before a request: hold events until ``end_request``."""
    g.analytics_hold = {"session_id": session_id}


def end_request() -> None:
    """For the app factory, once the response is made: end the request's transaction (what it
    did not commit is rolled back, as it would be a moment later) and write what it recorded.
    Nothing when no request holds events (``begin_request`` did not run)."""
    if g.pop("analytics_hold", None) is None:
        return
    with _buffer_lock:
        waiting = bool(_buffer)
    if not waiting:
        return
    session = db.session()
    if session.in_transaction():
        session.rollback()
    flush(session)


def pending_count() -> int:
    """Events of this process waiting to be written."""
    with _buffer_lock:
        return len(_buffer)


def flush(session: Session | None = None) -> int:
    """Write the buffer: one multi-row INSERT per ``BATCH_ROWS``. Never raises: a failure is
    logged and the batch dropped. Returns how many rows were written."""
    with _buffer_lock:
        rows = _buffer[:]
        _buffer.clear()
    if not rows:
        return 0
    try:
        _write(session if session is not None else db.session(), rows)
    except Exception:  # the user's work is committed already: never let the log undo or fail it
        log.exception("could not write %d analytics events; they are dropped", len(rows))
        return 0
    return len(rows)


def _write(session: Session, rows: list[dict]) -> None:
    batches = [rows[i:i + BATCH_ROWS] for i in range(0, len(rows), BATCH_ROWS)]
    bind = session.get_bind()
    if isinstance(bind, Connection):  # the test suite's one connection: in a savepoint of it
        with bind.begin_nested():
            for batch in batches:
                bind.execute(insert(Event).values(batch))
        return
    # A transaction of its own on the pool: no identity is needed (the INSERT policy admits any
    # writer and the table has no audit trigger), so no Session and no context statement.
    with bind.begin() as conn:
        for batch in batches:
            conn.execute(insert(Event).values(batch))
