"""Login sessions kept server-side in ``session_validations``.

The browser holds a random token (in the signed session cookie); the database keeps its hash.
A session ends when it is revoked (logout, password change, deactivation, an admin), when it
has been idle longer than ``SESSION_IDLE_MINUTES``, or at its absolute expiry.

Row-level security on ``session_validations`` (migration 0004): a user reaches their own rows,
admins and the system every row, compliance officers read them. The lookup by cookie happens
before the user is known, so the request puts the hash of its own token in the
transaction-local setting ``app.session_token_hash``: the policy then lets that request reach
the one row whose ``tokenHash`` matches, and no other. Binding a hash proves nothing by itself:
only the holder of the token knows a hash that matches a row. The lookup goes through the SQL
function ``session_for_request`` (migration 0009), which binds and reads in one statement, in
that order, and sets the identity of the session's user when the session is live; the binding
then lasts for the transaction, so a later logout or idle expiry of that row passes the policy
too. Login binds the new row's hash before inserting it.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import String, and_, bindparam, column, func, select, true, update
from sqlalchemy.orm import aliased

from portal.accounts.models import User
from portal.compliance.security.models import BlockedEntity, BlockKind, SessionValidation
from portal.db import db
from portal.db.base import utcnow
from portal.security.tokens import hash_session_token, new_session_token

#: lastSeenAt is written at most this often per session.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    max_age: timedelta


def session_policy(app) -> SessionPolicy:
    """The policy the app's configuration sets (``SESSION_IDLE_MINUTES``, ``SESSION_MAX_HOURS``)."""
    return SessionPolicy(
        idle=timedelta(minutes=app.config["SESSION_IDLE_MINUTES"]),
        max_age=timedelta(hours=app.config["SESSION_MAX_HOURS"]),
    )


def _bind_hash(token_hash: str) -> None:
    db.session.execute(select(func.set_config("app.session_token_hash", token_hash, True)))


def start_session(user: User, *, ip: str | None, user_agent: str | None, policy: SessionPolicy) -> str:
    """Record a new login session for ``user`` and return the token for the cookie.

    Login runs before the request has an identity, so the new row's hash is bound first: the
    row-level policy admits the insert as the token holder's."""
    token, token_hash = new_session_token()
    _bind_hash(token_hash)
    now = utcnow()
    db.session.add(
        SessionValidation(
            user_id=user.id,
            token_hash=token_hash,
            ip_address=(ip or "")[:45] or None,
            # PostgreSQL text cannot hold NUL, and the header is whatever the client sent.
            user_agent=(user_agent or "").replace("\x00", "")[:300] or None,
            last_seen_at=now,
            expires_at=now + policy.max_age,
        )
    )
    return token


@dataclass(frozen=True)
class Resolved:
    record: SessionValidation
    user: User
    #: The id of a block in force on this user, or None.
    user_block_id: uuid.UUID | None
    #: The id of a block in force on the request's address (when one was given), or None.
    ip_block_id: uuid.UUID | None = None
    #: The user's unread notifications, counted up to ``notifications.queries.UNREAD_COUNT_CAP``.
    unread_notifications: int = 0


def _user_block_id(user_id_column):
    """Scalar subquery: one block in force on the user (permanent first), or NULL."""
    now = func.now()
    return (
        select(BlockedEntity.id)
        .where(BlockedEntity.kind == BlockKind.USER, BlockedEntity.user_id == user_id_column,
               BlockedEntity.lifted_at.is_(None),
               (BlockedEntity.expires_at.is_(None)) | (BlockedEntity.expires_at > now))
        .order_by(BlockedEntity.expires_at.desc().nulls_first())
        .limit(1)
        .scalar_subquery()
    )


@functools.cache
def _lookup(with_ip: bool):
    """The per-request session lookup, built once (building it anew cost several milliseconds
    of Python on every request). One statement, executed with the parameters ``token_hash`` and
    ``ip``, that reads

    - the session through ``session_for_request`` (migration 0009), which sets the anonymous
      identity, binds the hash, reads the row and, for a session neither revoked nor expired of
      an active user, sets that user's identity for the transaction;
    - its user, in a LATERAL subquery of the function's row, so the user is read after the
      function has run whatever plan the planner picks (``OFFSET 0`` keeps it from being
      flattened into a plain join);
    - a block on the user and, ``with_ip``, a block on the address;
    - the user's unread notifications, for the layout's bell;
    - the identity the transaction now carries (``app.user_id``), so the caller knows whether
      it must set another.
    """
    from portal.compliance.security.blocks import ip_block_id
    from portal.platform.notifications.queries import unread_count_subquery

    table = SessionValidation.__table__
    rows = func.session_for_request(bindparam("token_hash", type_=String)).table_valued(
        *(column(c.name, c.type) for c in table.columns), name="sv")
    record = aliased(SessionValidation, rows, adapt_on_names=True)
    # Every column of the user the app role may read (``passwordHash`` it may not; the model
    # defers it and reads it through a function when asked).
    readable = [c for c in User.__table__.columns if c.name != "passwordHash"]
    owner = select(*readable).where(User.id == rows.c.userId).offset(0).lateral("u")
    user = aliased(User, owner)
    columns = [record, user, _user_block_id(user.id), unread_count_subquery(user.id),
               func.current_setting("app.user_id", True)]
    if with_ip:
        columns.append(ip_block_id(bindparam("ip", type_=String)))
    return select(*columns).select_from(rows).join(owner, true())


@dataclass(frozen=True)
class Lookup:
    """What the request's session lookup found (``found`` None: no live session) and which
    user's identity the transaction carries after it (``context_user_id``: "" for the anonymous
    one, None when the lookup sent no statement and changed nothing)."""

    found: Resolved | None
    context_user_id: str | None


def lookup_for_request(token: str | None, policy: SessionPolicy, *, ip: str | None = None) -> Lookup:
    """The request's first statement: the live session for a cookie token with its user, the
    blocks in force on the user and on ``ip`` and the unread count, in one query that also sets
    who acts (see ``_lookup``). A touch of ``lastSeenAt`` at most once a minute."""
    from portal.compliance.security.events import clean_ip

    if not token or len(token) > 100:
        return Lookup(None, None)
    ip = clean_ip(ip)
    row = db.session.execute(_lookup(bool(ip)), {"token_hash": hash_session_token(token), "ip": ip}).one_or_none()
    if row is None:
        # No row, no user: the function set the anonymous identity and no other.
        return Lookup(None, "")
    record, user, block_id, unread, context_user_id = row[:5]
    context_user_id = context_user_id or ""
    ip_block = row[5] if ip else None
    now = utcnow()
    if record.revoked_at is not None or record.expires_at <= now or not user.is_active:
        return Lookup(None, context_user_id)
    if record.last_seen_at + policy.idle <= now:
        record.revoked_at, record.revoked_reason = now, "idle"
        return Lookup(None, context_user_id)
    if now - record.last_seen_at >= TOUCH_EVERY:
        record.last_seen_at = now
    return Lookup(Resolved(record, user, block_id, ip_block, unread), context_user_id)


def resolve(token: str | None, policy: SessionPolicy) -> tuple[SessionValidation, User] | None:
    """The live session and its user for a cookie token, or None. Unlike a request's first
    statement, it leaves the transaction acting as whoever acted before."""
    from portal.db import context as db_context

    found = lookup_for_request(token, policy).found
    db_context.reapply(db.session)
    return (found.record, found.user) if found else None


def _live(now=None):
    now = now or utcnow()
    return and_(SessionValidation.revoked_at.is_(None), SessionValidation.expires_at > now)


def active_sessions(user_id: uuid.UUID, policy: SessionPolicy) -> list[SessionValidation]:
    """The user's live sessions, most recently used first (one query)."""
    now = utcnow()
    return list(db.session.scalars(
        select(SessionValidation)
        .where(SessionValidation.user_id == user_id, _live(now),
               SessionValidation.last_seen_at > now - policy.idle)
        .order_by(SessionValidation.last_seen_at.desc(), SessionValidation.id.desc())
        .limit(200)
    ))


def end_session(token: str | None, reason: str = "logout") -> None:
    if not token:
        return
    db.session.execute(
        update(SessionValidation)
        .where(SessionValidation.token_hash == hash_session_token(token), SessionValidation.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )


def end_user_sessions(user_id: uuid.UUID, reason: str, *, keep_token: str | None = None) -> int:
    """Revoke every live session of a user, except the one holding ``keep_token``."""
    stmt = (
        update(SessionValidation)
        .where(SessionValidation.user_id == user_id, SessionValidation.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    if keep_token:
        stmt = stmt.where(SessionValidation.token_hash != hash_session_token(keep_token))
    return db.session.execute(stmt).rowcount


def end_own_session(user: User, session_id: uuid.UUID, reason: str = "ended_by_user") -> bool:
    """End one of ``user``'s own live sessions by id; False when it is not theirs or not live
    (the caller answers 404 either way: an id of someone else's session tells nothing)."""
    ended = db.session.execute(
        update(SessionValidation)
        .where(SessionValidation.id == session_id, SessionValidation.user_id == user.id,
               SessionValidation.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    ).rowcount
    return ended == 1


# -- Ending sessions, with a security event ---------------------------------------------------------

def end_one(user: User, session_id: uuid.UUID) -> bool:
    """The user ends one of their own sessions (False: no such live session of theirs)."""
    from portal.compliance.security import events as security_events

    if not end_own_session(user, session_id):
        return False
    security_events.sessions_ended(user, user, 1, "one")
    return True


def end_others(user: User, keep_token: str | None) -> int:
    """The user ends every session but the one they are using."""
    from portal.compliance.security import events as security_events

    count = end_user_sessions(user.id, "ended_by_user", keep_token=keep_token)
    if count:
        security_events.sessions_ended(user, user, count, "others")
    return count


def admin_end_all(actor: User, user_id: uuid.UUID) -> tuple[User, int]:
    """An administrator ends every session of a user (the user must log in again)."""
    from portal.accounts.models import Role
    from portal.compliance.security import events as security_events
    from portal.errors import Forbidden, NotFound

    if actor is None or actor.role != Role.ADMIN:
        raise Forbidden("Only administrators can end another user's sessions.")
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("There is no such user.")
    count = end_user_sessions(user.id, "admin")
    security_events.sessions_ended(user, actor, count, "all")
    return user, count


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"), ("python-requests", "Python"),
             ("HeadlessChrome", "Headless Chrome"))
_SYSTEMS = (("Windows", "Windows"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"),
            ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def describe_user_agent(user_agent: str | None) -> str:
    """"Firefox on Linux" from a User-Agent header, or what can be said of it."""
    if not user_agent:
        return "Unknown browser"
    ua = user_agent
    browser = next((name for token, name in _BROWSERS if token in ua), None)
    if "HeadlessChrome" in ua:
        browser = "Headless Chrome"
    system = next((name for token, name in _SYSTEMS if token in ua), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or ua[:60]
