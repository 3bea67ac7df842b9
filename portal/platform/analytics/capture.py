"""Recording events: after the commit, in batches, never at the user's expense.

``record(name, user_id, **properties)`` is what a receiver of a domain event calls
(``listeners``). Nothing is written then:

1. The event waits in the session's ``info`` for the transaction to commit. A rollback drops it
   (nothing happened), so the log never shows an enrolment that did not take place.
2. On commit it moves to the process's buffer.
3. The buffer is written in one multi-row ``INSERT`` (``flush``). In a request, after the
   response has been sent: the app factory hands the function ``after_response`` returns to
   the response (``call_on_close``), which the server calls once the client has the whole
   answer, so no request waits for the write; the request's end (``end_request``) then writes
   nothing. Outside any request (a job, a command), once the committed transaction has
   returned its connection to the pool: never a second connection held beside the first.

After a response, the write goes through a small pool of its own in autocommit (``_writer``),
as the request log's does, since the request's session and app context are gone by then; the
rows carry their user and session from when they were recorded, and the table's INSERT policy
admits any writer, so no identity is set. There is no RETURNING, which the read policies would
check. Either way the write runs outside the request's transaction, so it can neither fail nor
roll back the user's work, and it holds no lock of theirs. A failed write is logged and its
batch dropped: analytics are not worth a retry loop in a web process. An event the test
suite's bound connection records is written on that connection, in a savepoint, so it rolls
back with the test.

``ANALYTICS_CAPTURE`` (configuration) turns recording off; the bench measures a page both ways.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from flask import current_app, g, has_app_context
from sqlalchemy import create_engine, event, insert
from sqlalchemy.engine import Connection, Engine
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
#: How long one write after a response may take before the database gives up on it.
WRITE_TIMEOUT_MS = 5000

_buffer: list[dict] = []
_buffer_lock = threading.Lock()
#: Held by the thread writing after a response; the others leave their rows to it.
_writing = threading.Lock()


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
    """For the app factory, before a request: hold the events it commits until its response has
    been sent (``after_response``), or its end (``end_request``) when no response took them."""
    g.analytics_hold = {"session_id": session_id}


def after_response() -> Callable[[], None] | None:
    """For the app factory, once the response is made: the function to call once the server has
    sent it (``response.call_on_close``), which writes what the request committed; from now on
    the request's end leaves the write to it. None when no request holds events."""
    hold = _request_hold()
    if hold is None:
        return None
    bind = _writer_bind()
    hold["after_response"] = True
    return lambda: write_after_response(bind)


def end_request() -> None:
    """For the app factory, at the end of the request (its teardown): what the request did not
    commit records nothing. What it committed is written after the response when
    ``after_response`` was handed to it; else (a response that never got that far) now, once
    the request's transaction is rolled back. Nothing when no request holds events
    (``begin_request`` did not run)."""
    hold = g.pop("analytics_hold", None)
    if hold is None:
        return
    session = db.session()
    if hold.get("after_response"):
        session.info.pop(_PENDING, None)  # uncommitted: goes with the session's rollback
        return
    with _buffer_lock:
        waiting = bool(_buffer)
    if not waiting:
        return
    if session.in_transaction():
        session.rollback()
    flush(session)


#: Batches one response's close writes at most: under a steady stream of events from other
#: threads, the thread that writes goes back to serving after these, and the next close
#: writes the rest.
WRITES_PER_RESPONSE = 3


def write_after_response(bind: Engine | Connection) -> int:
    """Write the buffer on ``bind`` after a response has gone (no app context needed). One
    thread writes at a time; one that finds another writing leaves its rows to it, and the
    writer looks at the buffer again once done (up to ``WRITES_PER_RESPONSE`` times), so what
    was there when it finished is not left behind. Never raises."""
    written = 0
    for _ in range(WRITES_PER_RESPONSE):
        if not pending_count() or not _writing.acquire(blocking=False):
            break
        try:
            written += flush(bind=bind)
        finally:
            _writing.release()
    return written


def _writer_bind() -> Engine | Connection:
    """Where a request's events go after its response: the test suite's one connection as it
    is; otherwise the writer's own pool on the app's database."""
    bind = db.session().get_bind()
    return bind if isinstance(bind, Connection) else _writer(bind)


class _Writer:
    engine: Engine | None = None
    pid: int | None = None
    source: Engine | None = None  #: the app's engine whose database it writes to


_WRITER = _Writer()
_writer_lock = threading.Lock()


def _writer(app_engine: Engine) -> Engine:
    """The after-response writer's engine, made on first use in each process (so after a fork):
    one connection (and one more at a push), autocommit (the INSERT is one statement), a short
    statement timeout so a stuck database does not hold a worker's thread for long. No
    ``pool_pre_ping`` (it would double every write): a connection the server dropped fails its
    batch, which is logged and dropped, and the pool replaces it."""
    if _WRITER.pid != os.getpid() or _WRITER.source is not app_engine:
        with _writer_lock:
            if _WRITER.pid != os.getpid() or _WRITER.source is not app_engine:
                if _WRITER.engine is not None:  # another app's, or the parent process's (kept open for it)
                    _WRITER.engine.dispose(close=_WRITER.pid == os.getpid())
                url = app_engine.url
                given = url.query.get("options")  # the app's own, kept beside the timeout
                options = " ".join(filter(None, [given if isinstance(given, str) else None,
                                                 f"-c statement_timeout={WRITE_TIMEOUT_MS}"]))
                _WRITER.engine = create_engine(url.difference_update_query(["options"]),
                                               isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=1,
                                               connect_args={"options": options})
                _WRITER.pid, _WRITER.source = os.getpid(), app_engine
    return _WRITER.engine


def pending_count() -> int:
    """Events of this process waiting to be written."""
    with _buffer_lock:
        return len(_buffer)


def flush(session: Session | None = None, *, bind: Engine | Connection | None = None) -> int:
    """Write the buffer, on ``bind`` or else on ``session``'s (the current session's by default):
    one multi-row INSERT per ``BATCH_ROWS``. Never raises: a failure is logged and the batch
    dropped. Returns how many rows were written."""
    with _buffer_lock:
        rows = _buffer[:]
        _buffer.clear()
    if not rows:
        return 0
    try:
        _write(bind if bind is not None else (session if session is not None else db.session()).get_bind(), rows)
    except Exception:  # the user's work is committed already: never let the log undo or fail it
        log.exception("could not write %d analytics events; they are dropped", len(rows))
        return 0
    return len(rows)


def _write(bind: Engine | Connection, rows: list[dict]) -> None:
    batches = [rows[i:i + BATCH_ROWS] for i in range(0, len(rows), BATCH_ROWS)]
    if isinstance(bind, Connection):  # the test suite's one connection: in a savepoint of it
        with bind.begin_nested():
            for batch in batches:
                bind.execute(insert(Event).values(batch))
        return
    # A transaction of its own (or autocommit, on the writer's pool): no identity is needed (the
    # INSERT policy admits any writer and the table has no audit trigger), so no Session and no
    # context statement; no RETURNING (the read policies would check it).
    with bind.begin() as conn:
        for batch in batches:
            conn.execute(insert(Event).values(batch))
