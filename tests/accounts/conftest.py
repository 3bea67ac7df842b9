"""Fixtures for the account tests: e-mail links, the outbox, sessions and cookies."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.compliance.security.models import SessionValidation
from portal.db import db
from portal.platform.email.models import Email
from portal.security.tokens import hash_session_token


class RecordingLinks:
    """A ``Links`` for the services: plain URLs whose last segment is the token."""

    base = "https://portal.test"

    def verify_email(self, token: str) -> str:
        return f"{self.base}/auth/verify/{token}"

    def reset_password(self, token: str) -> str:
        return f"{self.base}/auth/reset/{token}"

    def accept_invite(self, token: str) -> str:
        return f"{self.base}/auth/invite/{token}"

    def login(self) -> str:
        return f"{self.base}/auth/login"


@pytest.fixture
def links():
    return RecordingLinks()


@pytest.fixture
def policy(app):
    from portal.app import session_policy

    return session_policy(app)


def emails_to(address: str, template: str | None = None) -> list[Email]:
    stmt = select(Email).where(Email.to_address == address.lower()).order_by(Email.created_at, Email.id)
    if template:
        stmt = stmt.where(Email.template == template)
    return list(db.session.scalars(stmt))


def link_in(email: Email, kind: str) -> str:
    """The path of the ``/auth/<kind>/<token>`` link in an e-mail's body."""
    match = re.search(rf"https?://\S+/auth/{kind}/\S+", email.body_text)
    assert match, f"no {kind} link in {email.body_text!r}"
    return urlsplit(match.group(0)).path


def token_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def user_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def session_row(token: str) -> SessionValidation | None:
    return db.session.scalar(select(SessionValidation).where(SessionValidation.token_hash == hash_session_token(token)))


def live_sessions(user_id) -> list[SessionValidation]:
    return list(db.session.scalars(select(SessionValidation).where(
        SessionValidation.user_id == user_id, SessionValidation.revoked_at.is_(None))))


def cookie_session(app, client) -> dict:
    """The decoded (signed, client-side) Flask session of a test client."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    if cookie is None:
        return {}
    return app.session_interface.get_signing_serializer(app).loads(cookie.value)
