"""Authentication (missing, malformed, unknown, expired, revoked tokens, a deactivated account,
the wrong scope) and bad input: every refusal under /api is application/problem+json with a
4xx status, never a page and never a 500."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from portal.accounts.models import UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.platform.gateway.models import ApiToken


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("/api/v1/")
    return body


def _row(secret: str) -> ApiToken:
    return db.session.query(ApiToken).filter(ApiToken.prefix == secret[:12]).one()


def test_no_token_is_401_with_a_bearer_challenge(api):
    response = api("GET", "/me")
    _problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token azp_x", "Bearer not-a-token"])
def test_a_malformed_authorization_header_is_401(client, header):
    response = client.get("/api/v1/me", headers={"Authorization": header})
    _problem(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_an_unknown_token_is_401(api, make_user, make_token):
    real = make_token(make_user())
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    assert "not known" in _problem(api("GET", "/me", forged), 401)["detail"]


def test_an_expired_token_is_401(api, make_user, make_token):
    secret = make_token(make_user())
    _row(secret).expires_at = utcnow() - timedelta(seconds=1)
    assert "expired" in _problem(api("GET", "/me", secret), 401)["detail"]


def test_a_revoked_token_is_refused_at_once(api, make_user, make_token):
    user = make_user()
    secret = make_token(user)
    assert api("GET", "/me", secret).status_code == 200
    from portal.platform.gateway import tokens

    tokens.revoke_token(user, _row(secret).id)
    assert "revoked" in _problem(api("GET", "/me", secret), 401)["detail"]


def test_a_deactivated_users_token_is_401(api, make_user, make_token):
    user = make_user()
    secret = make_token(user)
    user.status = UserStatus.DEACTIVATED
    assert "not active" in _problem(api("GET", "/me", secret), 401)["detail"]


def test_a_read_token_cannot_write(api, make_user, make_token):
    secret = make_token(make_user(), ("read",))
    response = api("POST", "/notifications/read-all", secret)
    body = _problem(response, 403)
    assert body["type"].endswith("insufficient-scope")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


@pytest.fixture
def writer(make_user, make_token):
    return make_token(make_user(role="student"), ("read", "write"))


def _send(api, token, **kwargs):
    headers = {"Idempotency-Key": uuid.uuid4().hex, **kwargs.pop("headers", {})}
    return api("POST", "/transfers", token, headers=headers, **kwargs)


def test_malformed_json_is_400(api, writer):
    body = _problem(_send(api, writer, data='{"recipient": ', content_type="application/json"), 400)
    assert body["type"].endswith("malformed-json")


def test_a_body_that_is_not_json_is_415(api, writer):
    _problem(_send(api, writer, data="recipient=x", content_type="application/x-www-form-urlencoded"), 415)


def test_a_body_that_is_not_an_object_is_422(api, writer):
    body = _problem(_send(api, writer, json=["recipient"]), 422)
    assert body["errors"][0]["message"].startswith("The body must be a JSON object")


def test_unknown_fields_are_422_by_name(api, writer):
    body = _problem(_send(api, writer, json={"recipient": "a@b.example", "amount": "1", "currency": "USD",
                                             "admin": True}), 422)
    assert body["errors"] == [{"field": "admin", "message": "Unknown field: leave it out."}]


def test_wrong_types_and_missing_fields_are_422_per_field(api, writer):
    body = _problem(_send(api, writer, json={"recipient": 42, "amount": 1.5}), 422)
    assert {e["field"]: e["message"] for e in body["errors"]} == {
        "recipient": "Must be a string, not integer.", "amount": "Must be a string, not number.",
        "currency": "This field is required."}


def test_a_huge_body_is_413(api, writer):
    body = _problem(_send(api, writer, json={"note": "x" * 70_000}), 413)
    assert "at most" in body["detail"]


def test_a_bad_query_parameter_is_422(api, make_user, make_token):
    secret = make_token(make_user())
    assert _problem(api("GET", "/transactions", secret, query_string={"limit": "many"}), 422)["errors"][0]["field"] == "limit"
    assert _problem(api("GET", "/transactions", secret, query_string={"limit": "0"}), 422)
    assert _problem(api("GET", "/notifications", secret, query_string={"unread": "maybe"}), 422)


def test_a_malformed_id_is_404(api, writer):
    _problem(api("POST", "/notifications/not-an-id/read", writer), 404)


def test_unknown_addresses_and_methods_are_problems(api, writer):
    _problem(api("GET", "/nothing-here", writer), 404)
    _problem(api("GET", "/../v2/me", writer), 404)
    _problem(api("DELETE", "/me", writer), 405)


def test_a_nul_character_is_a_problem_too(api, writer):
    _problem(api("GET", "/courses", writer, query_string={"q": "a\0b"}), 400)


def test_an_unexpected_error_is_a_500_problem_not_a_page(api, writer, monkeypatch):
    from portal.learning.education import queries

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(queries, "catalog_page", broken)
    _problem(api("GET", "/courses", writer), 500)


def test_a_blocked_address_or_user_gets_a_403_problem(api, make_user, make_token):
    from portal.compliance.security import blocks

    admin, student = make_user(role="admin"), make_user(role="student")
    secret = make_token(student)
    blocks.add_block(admin, kind="ip", target="198.51.100.99", reason="testing the API", duration="24h")
    by_address = api("GET", "/me", secret, environ_base={"REMOTE_ADDR": "198.51.100.99"})
    assert "from this address are blocked" in _problem(by_address, 403)["detail"]
    assert int(by_address.headers["Retry-After"]) > 0
    assert api("GET", "/me", secret, environ_base={"REMOTE_ADDR": "198.51.100.98"}).status_code == 200
    blocks.add_block(admin, kind="user", target=student.email, reason="testing the API", duration="24h")
    by_user = api("GET", "/me", secret, environ_base={"REMOTE_ADDR": "198.51.100.98"})
    assert "by this account are blocked" in _problem(by_user, 403)["detail"]


def test_a_database_that_stays_away_is_a_503_problem_with_retry_after(api, make_user, make_token, monkeypatch):
    import psycopg
    from sqlalchemy import exc as sa_exc

    from blueprints.api import v1

    def dropped(*_args, **_kwargs):
        raise sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection"),
                                      connection_invalidated=True)

    secret = make_token(make_user())
    monkeypatch.setattr(v1.notification_queries, "page_for", dropped)
    response = api("GET", "/notifications", secret)
    assert "could not reach its database" in _problem(response, 503)["detail"]
    assert int(response.headers["Retry-After"]) > 0
