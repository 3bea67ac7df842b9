"""Login sessions kept server-side in ``session_validations``.

The browser holds a random token (in the signed session cookie); the database keeps its hash.
A session ends when it is revoked (logout, password change, deactivation, an admin), when it
has been idle longer than ``SESSION_IDLE_MINUTES``, or at its absolute expiry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from portal.accounts.models import User
from portal.compliance.security.models import SessionValidation
from portal.db import db
from portal.db.base import utcnow
from portal.security.tokens import hash_session_token, new_session_token

#: lastSeenAt is written at most this often per session.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    max_age: timedelta


def start_session(user: User, *, ip: str | None, user_agent: str | None, policy: SessionPolicy) -> str:
    """Record a new login session for ``user`` and return the token for the cookie."""
    token, token_hash = new_session_token()
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


def resolve(token: str | None, policy: SessionPolicy) -> tuple[SessionValidation, User] | None:
    """The live session and its user for a cookie token, or None (one query; a touch at most
    once a minute)."""
    if not token or len(token) > 100:
        return None
    row = db.session.execute(
        select(SessionValidation, User)
        .join(User, User.id == SessionValidation.user_id)
        .where(SessionValidation.token_hash == hash_session_token(token))
    ).one_or_none()
    if row is None:
        return None
    record, user = row
    now = utcnow()
    if record.revoked_at is not None or record.expires_at <= now or not user.is_active:
        return None
    if record.last_seen_at + policy.idle <= now:
        record.revoked_at, record.revoked_reason = now, "idle"
        return None
    if now - record.last_seen_at >= TOUCH_EVERY:
        record.last_seen_at = now
    return record, user


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
