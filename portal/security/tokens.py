"""Signed, expiring tokens for links sent by e-mail (verification, password reset, invites).

Tokens are signed with the app's SECRET_KEY and a purpose-specific salt, so a token made for
one purpose is useless for another. Single use comes from what they bind to: a reset token
carries the time the password last changed and stops working once it changes; a verification
token carries the e-mail it verifies.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class TokenInvalid(Exception):
    def __init__(self, expired: bool):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def make_token(secret_key: str, purpose: str, payload: dict) -> str:
    return URLSafeTimedSerializer(secret_key, salt=f"azora.{purpose}").dumps(payload)


def read_token(secret_key: str, purpose: str, token: str, max_age: int) -> dict:
    try:
        data = URLSafeTimedSerializer(secret_key, salt=f"azora.{purpose}").loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenInvalid(expired=True) from exc
    except (BadSignature, UnicodeError, ValueError) as exc:
        raise TokenInvalid(expired=False) from exc
    if not isinstance(data, dict):
        raise TokenInvalid(expired=False)
    return data


def new_session_token() -> tuple[str, str]:
    """A random session token and its SHA-256 hex digest (what the database keeps)."""
    token = secrets.token_urlsafe(32)
    return token, hash_session_token(token)


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
