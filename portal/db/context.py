"""Who is acting: the transaction-local settings that row-level security and the audit trail read.

At the start of every database transaction the session runs one statement::

    SELECT set_config('app.user_id', :uid, true), set_config('app.role', :role, true),
           set_config('app.actor', :actor, true)

with bound parameters (never string formatting). ``true`` makes each setting local to the
transaction, so a pooled connection never carries one request's identity into the next. It runs
again only when the identity changes inside the transaction, and not at all for a logged-in
request, whose first statement (the session lookup, ``session_for_request``) sets it itself
(``set_by_first_statement``).

The acting identity lives in a context variable: the web layer sets it per request, CLI
commands and jobs set a named system actor. Services never read it; they take the acting user
as an argument. Only the database layer reads it.

Limits (README, "Row-level security and its limits"). These are ordinary settings: any
statement running as the app role can change them (``set_config('app.role', 'system', true)``),
so row-level security protects against code that forgets the context, not against a statement
injected into the connection, which can claim any identity and read what it reads. Making the
identity unforgeable would mean every policy and the audit trigger calling a SECURITY DEFINER
function (not inlinable: a cost on every statement) that checks either an owner-only table
written on every request or a proof; users could prove themselves with their session token,
but system actors hold none and would need a key that the database can check and SQL cannot
read, while the portal's keys live in process memory. Not done, for now. What bounds the risk:
statements always bind their parameters; the app role is no superuser, has no BYPASSRLS, owns
nothing and may create neither tables nor temporary objects, so it cannot lift a policy or
plant a temporary table on a pooled connection; it cannot select ``users.passwordHash`` (only
``user_password_hash(id)`` answers, and only for the owner of the hash, the login step and
system actors); identity data, documents, uploads and withdrawal destinations are
encrypted under keys held in process memory; session tokens are stored as hashes; and every
write, forged or not, is recorded by the audit trigger in a trail that neither this role nor
the owner can change or delete.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Actor:
    """The identity written into ``app.*`` settings.

    ``label`` is what the audit trail records: ``user:<uuid>``, ``system:cli``,
    ``system:worker``, ``anonymous:web``.
    """

    label: str
    user_id: str = ""
    role: str = ""

    @classmethod
    def for_user(cls, user_id, role: str) -> Actor:
        return cls(label=f"user:{user_id}", user_id=str(user_id), role=role)

    @classmethod
    def system(cls, name: str) -> Actor:
        """A named system actor (CLI commands, jobs). Its role is ``system``."""
        return cls(label=f"system:{name}", role="system")


ANONYMOUS_WEB = Actor(label="anonymous:web", role="anonymous")

#: No actor at all: writes fail in the audit trigger, reads see no private rows.
_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("azora_actor", default=None)

_SET_CONTEXT = text(
    "SELECT set_config('app.user_id', :uid, true), set_config('app.role', :role, true), "
    "set_config('app.actor', :actor, true)"
)


def current_actor() -> Actor | None:
    return _current.get()


def _apply(session_or_conn, actor: Actor | None) -> None:
    actor = actor or Actor(label="")
    session_or_conn.execute(_SET_CONTEXT, {"uid": actor.user_id, "role": actor.role, "actor": actor.label})


def push(actor: Actor | None, session: Session | None = None) -> contextvars.Token:
    """Make ``actor`` current; ``reset`` with the returned token restores the previous one.

    With ``session`` inside a transaction, the settings change at once as well (unless the
    actor is the one already current: the transaction holds it already).
    """
    previous = _current.get()
    token = _current.set(actor)
    if actor != previous:
        _apply_if_active(session, actor)
    return token


def reset(token: contextvars.Token, session: Session | None = None) -> None:
    previous = _current.get()
    _current.reset(token)
    if _current.get() != previous:
        _apply_if_active(session, _current.get())


def set_actor(actor: Actor | None, session: Session | None = None) -> None:
    """Make ``actor`` the current identity.

    If ``session`` is inside a transaction, the settings are applied to it at once (the
    transaction began before the identity was known, e.g. while looking up the login session),
    unless the actor is the one already current.
    """
    previous = _current.get()
    _current.set(actor)
    if actor != previous:
        _apply_if_active(session, actor)


def reapply(session: Session) -> None:
    """Apply the current identity to ``session``'s open transaction, if it has one."""
    _apply_if_active(session, _current.get())


def _apply_if_active(session, actor: Actor | None) -> None:
    if session is None:
        return
    if hasattr(session, "registry"):  # a scoped_session: act on the current session
        session = session()
    if session.in_transaction():
        _apply(session, actor)


@contextlib.contextmanager
def acting_as(actor: Actor, session: Session | None = None) -> Iterator[Actor]:
    """Run a block as ``actor`` and restore the previous identity afterwards."""
    token = push(actor, session)
    try:
        yield actor
    except BaseException:
        # After a failed statement the transaction is aborted and cannot take the settings: they
        # go with the rollback the caller now owes, and the statement's own error is the one to
        # report, not "transaction is aborted".
        with contextlib.suppress(SQLAlchemyError):
            reset(token, session)  # the identity itself is restored before the settings are sent
        raise
    reset(token, session)


#: ``Session.info`` flag: the transaction's first statement sets the identity itself.
_SET_BY_FIRST_STATEMENT = "context_set_by_first_statement"


@contextlib.contextmanager
def set_by_first_statement(session) -> Iterator[None]:
    """Within the block, a transaction that begins does not get the separate ``set_config``
    statement: its first statement sets the identity itself (the request's session lookup,
    ``session_for_request``, sets the anonymous identity, then the user's). The caller must make
    the current identity and the transaction's agree afterwards (``set_actor`` with the session
    when they differ). A transaction already open is left as it is."""
    info = session().info if hasattr(session, "registry") else session.info
    info[_SET_BY_FIRST_STATEMENT] = True
    try:
        yield
    finally:
        info.pop(_SET_BY_FIRST_STATEMENT, None)


@event.listens_for(Session, "after_begin")
def _after_begin(session, transaction, connection):
    """Apply the current identity at the start of every transaction of every session (but for
    one whose first statement sets it, ``set_by_first_statement``)."""
    if session.info.pop(_SET_BY_FIRST_STATEMENT, False):
        return
    if transaction.nested:
        return  # a savepoint: the enclosing transaction holds the current identity already
    _apply(connection, _current.get())
