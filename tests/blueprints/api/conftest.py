"""Fixtures of the API tests: a user's token, and requests that carry it."""

from __future__ import annotations

import pytest

from portal.platform.gateway import tokens


def token_for(app, user, scopes=("read",), days=30) -> str:
    """A new personal access token of ``user`` (in the test's transaction); the secret."""
    return tokens.create_token(user, "test token", list(scopes), days,
                               tokens.token_key(app.config["SECRET_KEY"])).secret


@pytest.fixture
def make_token(app):
    return lambda user, scopes=("read",), days=30: token_for(app, user, scopes, days)


@pytest.fixture
def api(client):
    """``api(method, path, token, **kwargs)``: a request under /api/v1 with the bearer token."""

    def call(method: str, path: str, token: str | None = None, *, headers: dict | None = None, **kwargs):
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return client.open("/api/v1" + path, method=method, headers=sent, csrf=False, **kwargs)

    return call
