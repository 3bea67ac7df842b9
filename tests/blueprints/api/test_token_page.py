"""The account's "API tokens" page: a token is made and shown once, works at once with the API,
is listed by its prefix only, and stops working the moment it is revoked."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.db import db
from portal.platform.gateway.models import ApiToken


def _secret(html: str) -> str:
    return re.search(r'value="(azp_[^"]+)"', html).group(1)


def test_make_a_token_see_it_once_and_use_it(client, login_as):
    user = login_as("student")
    made = client.post("/auth/tokens", data={"name": "budget script", "scopes": ["read", "write"], "days": "90"})
    assert made.status_code == 201
    secret = _secret(made.get_data(as_text=True))
    assert secret and "Copy it now" in made.get_data(as_text=True)
    listed = client.get("/auth/tokens").get_data(as_text=True)
    assert secret not in listed and secret[:12] in listed and "budget script" in listed  # once, then the prefix
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.get_json()["id"] == str(user.id)
    assert me.get_json()["token"]["scopes"] == ["read", "write"]


def test_bad_input_is_shown_beside_the_form(client, login_as):
    login_as("student")
    refused = client.post("/auth/tokens", data={"name": "", "scopes": ["read"], "days": "30"})
    assert refused.status_code == 422
    assert "Give the token a name" in refused.get_data(as_text=True)
    assert 'value="azp_' not in refused.get_data(as_text=True)


def test_revoking_ends_the_token_at_once(client, login_as):
    login_as("faculty")
    secret = _secret(client.post("/auth/tokens", data={"name": "t", "scopes": ["read"], "days": "7"})
                     .get_data(as_text=True))
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.prefix == secret[:12]))
    revoked = client.post(f"/auth/tokens/{token_id}/revoke", headers={"HX-Request": "true"})
    assert revoked.status_code == 200 and "no longer works" in revoked.get_data(as_text=True)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_nobody_revokes_another_users_token(client, login_as, make_user):
    from tests.blueprints.api.conftest import token_for

    owner = make_user()
    secret = token_for(client.application, owner)
    token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.prefix == secret[:12]))
    login_as("student")
    assert client.post(f"/auth/tokens/{token_id}/revoke").status_code == 404
    assert client.post("/auth/tokens/not-an-id/revoke").status_code == 404
    assert db.session.get(ApiToken, token_id).revoked_at is None
