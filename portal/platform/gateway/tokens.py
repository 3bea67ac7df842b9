"""Personal access tokens: created and revoked by their owner, checked on every API request.

A token reads ``azp_<8 characters>_<32 characters>``. It is shown once, when made; the portal
keeps its first 12 characters (the prefix, to recognise it in the list) and an HMAC-SHA256 of the
whole token under a key derived from ``SECRET_KEY``: a copy of the table alone cannot be turned
back into tokens, nor checked against guesses without the key. Revoking sets ``revokedAt``; the
next request with the token is refused (nothing is cached). Rotating ``SECRET_KEY`` ends every
token, as it ends every session.

Services take the acting user; the caller commits. The key is passed in by the caller (the web
layer reads it from the app's configuration), so nothing here reads the request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, NotFound
from portal.platform.gateway.models import SCOPES, ApiToken

PREFIX = "azp_"
#: Characters of the token kept in clear: ``azp_`` and the 8 of its public part.
SHOWN = len(PREFIX) + 8
#: Lifetimes a user may pick, in days.
LIFETIMES = (7, 30, 90, 365)
#: Live tokens one user may hold at once.
MAX_TOKENS = 20
#: ``lastUsedAt`` is written at most this often per token.
TOUCH_EVERY = timedelta(minutes=1)
MAX_NAME = 80


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    #: The token itself: shown once, never stored.
    secret: str


def token_key(secret_key: str) -> bytes:
    """The HMAC key of token hashes, derived from the app's secret key (its own purpose, so a
    token hash never equals anything else signed with the same secret)."""
    return hashlib.sha256(b"azora-api-token\0" + secret_key.encode()).digest()


def hash_token(token: str, key: bytes) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def _clean_scopes(scopes) -> list[str]:
    chosen = [s for s in SCOPES if s in set(scopes or ())]
    unknown = set(scopes or ()) - set(SCOPES)
    if unknown or not chosen:
        raise DomainError("Choose what the token may do: read, or read and write.", field="scopes")
    if "write" in chosen and "read" not in chosen:
        chosen.insert(0, "read")  # whoever may change the data may read it
    return chosen


def create_token(user, name: str | None, scopes, days, key: bytes) -> NewToken:
    """A new token of ``user`` named ``name`` with ``scopes``, expiring in ``days``."""
    name = " ".join((name or "").split())
    if not name:
        raise DomainError("Give the token a name, so you know what uses it.", field="name")
    if len(name) > MAX_NAME:
        raise DomainError(f"The name can have at most {MAX_NAME} characters.", field="name")
    try:
        days = int(days)
    except (TypeError, ValueError):
        days = 0
    if days not in LIFETIMES:
        raise DomainError(f"Choose how long the token lives: {', '.join(map(str, LIFETIMES))} days.",
                          field="days")
    chosen = _clean_scopes(scopes)
    if len(live_tokens(user.id)) >= MAX_TOKENS:
        raise DomainError(f"You have {MAX_TOKENS} live tokens already: revoke one you no longer use first.")
    secret = f"{PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(24)}"
    token = ApiToken(id=uuid.uuid4(), user_id=user.id, name=name, prefix=secret[:SHOWN],
                     token_hash=hash_token(secret, key), scopes=chosen,
                     expires_at=utcnow() + timedelta(days=days))
    db.session.add(token)
    db.session.flush()
    return NewToken(token, secret)


def live_tokens(user_id: uuid.UUID) -> list[ApiToken]:
    """The user's tokens that still work, newest first."""
    return list(db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
                               ApiToken.expires_at > utcnow())
        .order_by(ApiToken.created_at.desc(), ApiToken.id)))


def revoke_token(user, token_id: uuid.UUID) -> ApiToken:
    """Revoke one of ``user``'s own tokens; another user's token is "not found", as a missing one."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("There is no such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


@dataclass(frozen=True)
class Check:
    """What a presented token turned out to be: ``token`` when it works, else ``problem`` says
    why not (``missing``, ``malformed``, ``unknown``, ``expired``, ``revoked``)."""

    token: ApiToken | None
    problem: str | None = None


def check_token(presented: str | None, key: bytes, now: datetime | None = None) -> Check:
    """The token a request presented, looked up by its hash (one statement)."""
    if not presented:
        return Check(None, "missing")
    if not presented.startswith(PREFIX) or len(presented) > 100 or not presented.isascii():
        return Check(None, "malformed")
    token = db.session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(presented, key))).first()
    if token is None:
        return Check(None, "unknown")
    now = now or utcnow()
    if token.revoked_at is not None:
        return Check(None, "revoked")
    if token.expires_at <= now:
        return Check(None, "expired")
    return Check(token)


def touch(token: ApiToken, now: datetime | None = None) -> None:
    """Remember the token was used, at most once a minute (one UPDATE, only when due)."""
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        db.session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
                           .execution_options(synchronize_session=False))
