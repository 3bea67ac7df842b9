"""Personal access tokens as a service: made with a name, scopes and a lifetime, kept only as a
keyed hash with a prefix in clear, checked by hash, revoked by their owner only."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, NotFound
from portal.platform.gateway import tokens
from portal.platform.gateway.models import ApiToken
from tests.factories import create_user
from tests.helpers import as_user

KEY = tokens.token_key("a test secret")


def test_a_token_is_kept_as_a_keyed_hash_with_a_prefix():
    user = create_user()
    made = tokens.create_token(user, "  grades   export ", ["read"], 30, KEY)
    row = db.session.get(ApiToken, made.token.id)
    assert made.secret.startswith("azp_") and len(made.secret) > 40
    assert row.name == "grades export" and row.prefix == made.secret[:12]
    assert row.token_hash == tokens.hash_token(made.secret, KEY) and made.secret not in row.token_hash
    assert tokens.hash_token(made.secret, tokens.token_key("another secret")) != row.token_hash
    assert timedelta(days=29, hours=23) < row.expires_at - utcnow() <= timedelta(days=30)


def test_write_implies_read():
    made = tokens.create_token(create_user(), "writer", ["write"], 7, KEY)
    assert made.token.scopes == ["read", "write"]


@pytest.mark.parametrize(("name", "scopes", "days", "field"), [
    ("", ["read"], 30, "name"),
    ("x" * 81, ["read"], 30, "name"),
    ("ok", [], 30, "scopes"),
    ("ok", ["admin"], 30, "scopes"),
    ("ok", ["read"], 3, "days"),
    ("ok", ["read"], "forever", "days"),
])
def test_bad_input_names_its_field(name, scopes, days, field):
    with pytest.raises(DomainError) as refused:
        tokens.create_token(create_user(), name, scopes, days, KEY)
    assert refused.value.field == field


def test_check_tells_why_a_token_does_not_work():
    user = create_user()
    live = tokens.create_token(user, "live", ["read"], 30, KEY)
    old = tokens.create_token(user, "old", ["read"], 30, KEY)
    old.token.expires_at = utcnow() - timedelta(seconds=1)
    gone = tokens.create_token(user, "gone", ["read"], 30, KEY)
    tokens.revoke_token(user, gone.token.id)
    assert tokens.check_token(live.secret, KEY).token.id == live.token.id
    assert tokens.check_token(old.secret, KEY).problem == "expired"
    assert tokens.check_token(gone.secret, KEY).problem == "revoked"
    assert tokens.check_token(live.secret + "x", KEY).problem == "unknown"
    assert tokens.check_token(live.secret, tokens.token_key("rotated")).problem == "unknown"
    assert tokens.check_token("ghp_something", KEY).problem == "malformed"
    assert tokens.check_token(None, KEY).problem == "missing"
    assert [t.name for t in tokens.live_tokens(user.id)] == ["live"]


def test_only_the_owner_revokes_a_token():
    owner, other = create_user(), create_user()
    made = tokens.create_token(owner, "mine", ["read"], 30, KEY)
    with pytest.raises(NotFound):
        tokens.revoke_token(other, made.token.id)
    with pytest.raises(NotFound):
        tokens.revoke_token(owner, uuid.uuid4())
    assert made.token.revoked_at is None


def test_a_user_holds_a_bounded_number_of_live_tokens(monkeypatch):
    monkeypatch.setattr(tokens, "MAX_TOKENS", 2)
    user = create_user()
    tokens.create_token(user, "one", ["read"], 30, KEY)
    tokens.create_token(user, "two", ["read"], 30, KEY)
    with pytest.raises(DomainError, match="live tokens already"):
        tokens.create_token(user, "three", ["read"], 30, KEY)


def test_use_is_remembered_at_most_once_a_minute():
    made = tokens.create_token(create_user(), "t", ["read"], 30, KEY)
    now = utcnow()
    tokens.touch(made.token, now)
    db.session.refresh(made.token)
    assert made.token.last_used_at == now
    tokens.touch(made.token, now + timedelta(seconds=30))
    db.session.refresh(made.token)
    assert made.token.last_used_at == now


def test_row_level_security_keeps_tokens_to_their_owner():
    owner, other = create_user(), create_user()
    mine = tokens.create_token(owner, "mine", ["read"], 30, KEY).token.id
    tokens.create_token(other, "theirs", ["read"], 30, KEY)
    db.session.flush()
    with as_user(owner):
        seen = db.session.scalars(select(ApiToken.id).where(ApiToken.user_id.in_([owner.id, other.id]))).all()
    assert seen == [mine]


def test_the_trail_never_holds_the_hash():
    made = tokens.create_token(create_user(), "audited", ["read"], 30, KEY)
    db.session.flush()
    values = db.session.execute(text(
        """SELECT "newValues" FROM audit_log WHERE "tableName" = 'api_tokens' AND "rowId" = :id"""),
        {"id": str(made.token.id)}).scalar_one()
    assert values["name"] == "audited" and "tokenHash" not in values
