"""Rate limits over HTTP: per token, per user (every token of theirs) and per address, each
route group with its own limits from the configuration; the ``RateLimit-*`` headers on every
answer and ``Retry-After`` on 429. A refused token counts against its address."""

from __future__ import annotations

import pytest


@pytest.fixture
def limits(app):
    """Set the limits for one test: ``limits(token={...}, user={...}, address={...})``."""
    keys = {"token": "API_RATE_LIMITS", "user": "API_RATE_LIMITS_PER_USER", "address": "API_RATE_LIMITS_PER_ADDRESS"}
    saved = {name: app.config[name] for name in keys.values()}

    def set_limits(**given):
        for short, name in keys.items():
            app.config[name] = given.get(short, {})

    yield set_limits
    app.config.update(saved)


def _address(n: int) -> dict:
    return {"environ_base": {"REMOTE_ADDR": f"198.51.100.{n}"}}


def test_every_answer_carries_the_headers(api, make_user, make_token, limits):
    limits(token={"read": 5}, user={"read": 50}, address={"read": 500})
    token = make_token(make_user())
    response = api("GET", "/me", token, **_address(10))
    assert (response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]) == ("5", "4")
    assert 1 <= int(response.headers["RateLimit-Reset"]) <= 61
    assert "Retry-After" not in response.headers


def test_past_the_token_limit_429_with_retry_after(api, make_user, make_token, limits):
    limits(token={"read": 2}, user={"read": 50}, address={"read": 500})
    token = make_token(make_user())
    for remaining in ("1", "0"):
        assert api("GET", "/me", token, **_address(11)).headers["RateLimit-Remaining"] == remaining
    refused = api("GET", "/me", token, **_address(11))
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert int(refused.headers["Retry-After"]) == int(refused.headers["RateLimit-Reset"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"


def test_the_user_limit_spans_all_their_tokens(api, make_user, make_token, limits):
    limits(token={"read": 100}, user={"read": 2}, address={"read": 500})
    user = make_user()
    first, second = make_token(user), make_token(user)
    assert api("GET", "/me", first, **_address(12)).status_code == 200
    assert api("GET", "/me", second, **_address(12)).status_code == 200
    assert api("GET", "/me", second, **_address(12)).status_code == 429
    other = make_token(make_user())
    assert api("GET", "/me", other, **_address(12)).status_code == 200  # someone else is not held back


def test_groups_have_their_own_limits(api, make_user, make_token, limits):
    limits(token={"read": 1, "write": 5}, user={}, address={})
    token = make_token(make_user(), ("read", "write"))
    assert api("GET", "/me", token, **_address(13)).status_code == 200
    assert api("GET", "/me", token, **_address(13)).status_code == 429  # reads are used up ...
    written = api("POST", "/notifications/read-all", token, **_address(13))
    assert written.status_code == 200 and written.headers["RateLimit-Limit"] == "5"  # ... writes are not


def test_bad_tokens_count_against_the_address(client, limits):
    limits(address={"read": 2})
    for _ in range(2):
        assert client.get("/api/v1/me", headers={"Authorization": "Bearer azp_guess"}, **_address(14)).status_code == 401
    refused = client.get("/api/v1/me", headers={"Authorization": "Bearer azp_guess"}, **_address(14))
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer azp_guess"}, **_address(15)).status_code == 401


def test_the_description_is_limited_per_address(client, limits):
    limits(address={"docs": 1})
    assert client.get("/api/v1/openapi.json", **_address(16)).status_code == 200
    assert client.get("/api/v1/openapi.json", **_address(16)).status_code == 429


def test_the_login_throttle_still_counts_in_rate_limits(client, make_user):
    """The login throttle and the API share ``rate_limits``: failed logins still end in the
    throttle's refusal."""
    from sqlalchemy import select

    from portal.db import db
    from portal.platform.gateway.models import RateLimit

    user = make_user()
    email = user.email
    client.post("/auth/login", data={"email": email, "password": "wrong password 1"}, **_address(17))
    keys = db.session.scalars(select(RateLimit.key).where(RateLimit.key.like("login:%198.51.100.17%"))).all()
    assert keys, "a failed login counts in rate_limits"
