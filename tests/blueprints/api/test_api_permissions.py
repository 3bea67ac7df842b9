"""The permission matrix of the JSON API: every token route, asked with a token of each role and
each scope, answers as the table says; and a token never reaches another user's rows.

The table is written from what each role should be able to do: ``ok`` (served: not 401/403),
``scope`` (403, the token lacks the scope) and ``role`` (403, the role lacks the permission).
"""

from __future__ import annotations

import uuid

import pytest

from blueprints.api.spec import OPERATIONS
from portal.db import db
from portal.platform.notifications.services import notify

ROLES = ("student", "faculty", "compliance", "admin")

#: endpoint -> {role: (outcome with a read token, outcome with a read and write token)}
TABLE = {
    "api.me": dict.fromkeys(ROLES, ("ok", "ok")),
    "api.courses": dict.fromkeys(ROLES, ("ok", "ok")),
    "api.enrolments": {"student": ("ok", "ok"), "faculty": ("role", "role"), "compliance": ("role", "role"),
                       "admin": ("role", "role")},
    "api.grades": {"student": ("ok", "ok"), "faculty": ("role", "role"), "compliance": ("role", "role"),
                   "admin": ("role", "role")},
    "api.wallet_list": {"student": ("ok", "ok"), "faculty": ("role", "role"), "compliance": ("role", "role"),
                        "admin": ("role", "role")},
    "api.transactions": {"student": ("ok", "ok"), "faculty": ("role", "role"), "compliance": ("role", "role"),
                         "admin": ("role", "role")},
    "api.send_money": {"student": ("scope", "ok"), "faculty": ("scope", "role"), "compliance": ("scope", "role"),
                       "admin": ("scope", "role")},
    "api.notification_list": dict.fromkeys(ROLES, ("ok", "ok")),
    "api.notification_read": dict.fromkeys(ROLES, ("scope", "ok")),
    "api.notification_read_all": dict.fromkeys(ROLES, ("scope", "ok")),
}

TOKEN_OPERATIONS = [op for op in OPERATIONS if op.scope is not None]


def test_the_table_lists_every_token_route():
    assert {op.endpoint for op in TOKEN_OPERATIONS} == set(TABLE)


def _path(op) -> str:
    return op.path.replace("{note_id}", str(uuid.uuid4()))


CASES = [pytest.param(op, role, write, id=f"{op.method} {op.path} [{role}, {'write' if write else 'read'}]")
         for op in TOKEN_OPERATIONS for role in ROLES for write in (False, True)]


@pytest.mark.parametrize(("op", "role", "write"), CASES)
def test_token_route_answers_as_the_table_says(api, make_user, make_token, op, role, write):
    user = make_user(role=role)
    token = make_token(user, ("read", "write") if write else ("read",))
    response = api(op.method, _path(op), token, headers={"Idempotency-Key": uuid.uuid4().hex}, json={})
    expected = TABLE[op.endpoint][role][1 if write else 0]
    assert response.status_code < 500
    if expected == "ok":
        assert response.status_code not in (401, 403), response.get_data(as_text=True)
    else:
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        kind = response.get_json()["type"].rsplit("-", 1)[1]
        assert kind == ("scope" if expected == "scope" else "forbidden")


def test_a_logged_in_session_is_no_credential_for_the_api(client, login_as):
    login_as("student")
    assert client.get("/dashboard").status_code == 200  # the session works for pages ...
    response = client.get("/api/v1/me")
    assert response.status_code == 401  # ... not for the API
    assert response.mimetype == "application/problem+json"


def test_a_token_never_sees_or_changes_another_users_notifications(api, make_user, make_token):
    owner, other = make_user(role="student"), make_user(role="student")
    theirs = notify(other.id, "account", "For the other student only")
    mine = notify(owner.id, "account", "For the owner")
    db.session.flush()
    theirs_id, mine_id = theirs.id, mine.id
    token = make_token(owner, ("read", "write"))
    listed = api("GET", "/notifications", token).get_json()["items"]
    assert [n["id"] for n in listed] == [str(mine_id)]
    refused = api("POST", f"/notifications/{theirs_id}/read", token)
    assert refused.status_code == 404
    assert refused.mimetype == "application/problem+json"
    db.session.expire_all()
    from portal.platform.notifications.models import Notification

    assert db.session.get(Notification, theirs_id).read_at is None


def test_each_user_reads_only_their_own_profile_and_wallets(api, make_user, make_token):
    first, second = make_user(role="student"), make_user(role="student")
    first_token, second_token = make_token(first), make_token(second)
    first_id, second_id = str(first.id), str(second.id)
    assert api("GET", "/me", first_token).get_json()["id"] == first_id
    assert api("GET", "/me", second_token).get_json()["id"] == second_id
