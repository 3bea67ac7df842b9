"""How a read ends: with COMMIT, so the connection keeps its prepared statements.

psycopg prepares a statement on the server once a connection has run it five times, and then
PostgreSQL plans it once instead of on every run. But psycopg forgets every prepared statement of
a connection when a transaction ends with ROLLBACK (it sends ``DEALLOCATE ALL``: a rolled-back
transaction might have changed the tables the plans were made for). A page that only reads
ends its transaction when the request ends, and Flask-SQLAlchemy ends an open transaction with a
rollback: so every page planned every one of its statements again on every request. Planning is
not small next to running: the student dashboard's combined statement plans in about 4.5 ms and
runs in under 1 ms.

A transaction that wrote nothing ends the same whether it commits or rolls back. So a request
that reads (GET or HEAD), answered without an error, whose transaction sent no writing statement
and whose session holds no unsaved change, ends with COMMIT. Anything else still ends with the
rollback: a request that failed, a refusal, a write the view did not commit (which the rule "no
state change on GET" forbids; it is not made durable here). The login session's once-a-minute
``lastSeenAt`` is written in a ``bookkeeping`` block, which does not count as a write, so a read
keeps it too (before, it went with the rollback, and a session used only to read ended as idle).

Which statements write is noted per connection as they are sent: any statement but a
``SELECT`` or a savepoint's counts (``INSERT``, ``UPDATE``, ``DELETE``, ``WITH``...), except in a
``bookkeeping`` block (the login session's touch, which a read keeps).
A ``SELECT`` of a function that writes (``ledger_post``) is not seen as one; the views that call
such functions are POSTs, which commit or roll back themselves.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

log = logging.getLogger(__name__)

#: The key, in a connection's ``info``, of "this transaction sent a writing statement".
WROTE = "portal.wrote"


#: Statements that write nothing by themselves: reads, and savepoints (what runs inside one is
#: noted on its own).
_NOT_WRITING = ("SELECT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def _reads(statement: str) -> bool:
    return statement.lstrip(" \t\r\n(")[:21].upper().startswith(_NOT_WRITING)


@event.listens_for(Engine, "before_cursor_execute")
def _note_writes(conn: Connection, _cursor, statement: str, _parameters, _context, _executemany) -> None:
    if not _reads(statement):
        conn.info[WROTE] = True


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _transaction_ended(conn: Connection) -> None:
    conn.info.pop(WROTE, None)


@event.listens_for(Pool, "checkout")
def _checked_out(_dbapi_connection, record, _proxy) -> None:
    record.info.pop(WROTE, None)


@event.listens_for(Pool, "reset")
def _reset(_dbapi_connection, record, _state) -> None:
    record.info.pop(WROTE, None)


#: The key, in a connection's ``info``, of "a ``bookkeeping`` block is running".
BOOKKEEPING = "portal.bookkeeping"


@contextlib.contextmanager
def bookkeeping(session: Session) -> Iterator[None]:
    """Writes in the block are not the request's own: a read that made only these still ends
    with COMMIT, and so keeps them. (The tests' statement counts leave them out too: the login
    session's touch is once a minute, not a page's.)"""
    conn = session.connection()
    wrote = conn.info.get(WROTE)
    conn.info[BOOKKEEPING] = True
    try:
        yield
    finally:
        conn.info.pop(BOOKKEEPING, None)
        if wrote:
            conn.info[WROTE] = True
        else:
            conn.info.pop(WROTE, None)


def commit_if_unwritten(session: Session) -> bool:
    """End ``session``'s transaction with COMMIT if it wrote nothing and holds no unsaved
    change; returns whether it did. A failed commit is logged and rolled back (the request's
    answer is made already, and the transaction held nothing of its own)."""
    if not session.in_transaction() or session.new or session.dirty or session.deleted:
        return False
    if session.connection().info.get(WROTE):
        return False
    # Nothing was written, so nothing the session holds went stale with this commit: its objects
    # (the logged-in user, which the response's last hooks still read) are kept as loaded, not
    # expired to be read again.
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    except SQLAlchemyError as exc:
        log.warning("could not end a read with COMMIT: %s", str(getattr(exc, "orig", None) or exc).strip()[:200])
        try:
            session.rollback()
        except SQLAlchemyError:  # the connection is gone (a server restart): the pool drops it
            session.close()
        return False
    finally:
        session.expire_on_commit = expire
    return True
