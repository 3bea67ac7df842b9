"""The test harness itself (tests/conftest.py): a test request behaves like a real one.

A view that forgets its commit must fail its test; a request must not see the test's session or
``g``; every POST carries the CSRF token a browser would send, and without it is refused; a
statement count leaves the test's savepoints out.
"""

from __future__ import annotations

import uuid

from flask import g
from sqlalchemy import text

import blueprints.admin.routes as admin_routes
from portal.accounts.models import User, UserStatus
from portal.db import db
from tests.factories import create_user


class _ForgetfulSession:
    """The request's session, except that ``commit`` only flushes: a view that forgot its commit."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def commit(self):
        self._real.flush()


class _ForgetfulDb:
    def __getattr__(self, name):
        return getattr(db, name)

    @property
    def session(self):
        return _ForgetfulSession(db.session)


def _status_of(user_id) -> UserStatus:
    return db.session.scalar(text('SELECT status FROM users WHERE id = :id'), {"id": user_id})


def test_a_view_that_commits_keeps_its_write(client, login_as):
    login_as("admin")
    target = create_user("student")
    assert client.post(f"/admin/users/{target.id}/deactivate").status_code == 302
    assert _status_of(target.id) == UserStatus.DEACTIVATED.value


def test_a_view_that_forgets_its_commit_loses_its_write(client, login_as, monkeypatch):
    """The same request with the view's commit taken away: the write is gone, as it would be in
    production, so a view test that checks the write fails."""
    login_as("admin")
    target = create_user("student")
    monkeypatch.setattr(admin_routes, "db", _ForgetfulDb())
    assert client.post(f"/admin/users/{target.id}/deactivate").status_code == 302
    assert _status_of(target.id) == UserStatus.ACTIVE.value
    assert db.session.get(User, target.id).status == UserStatus.ACTIVE


def test_a_request_has_its_own_session_and_g(app, client):
    seen = {}

    def _peek():  # on the live app for this test only (removed below)
        seen["session"] = db.session()
        seen["g_marker"] = g.get("harness_marker")

    app.before_request_funcs.setdefault(None, []).append(_peek)
    try:
        g.harness_marker = "set by the test"
        client.get("/auth/login")
    finally:
        app.before_request_funcs[None].remove(_peek)
    assert seen["session"] is not db.session()
    assert seen["g_marker"] is None


def test_the_tests_uncommitted_set_up_reaches_the_request(client, login_as):
    """What the test set up counts as committed by earlier requests: a refused request rolls
    back its own work, never the set-up."""
    login_as("admin")
    target = create_user("student")
    # No such user: the view rolls back and sends the admin back to the list with the message.
    response = client.post(f"/admin/users/{uuid.uuid4()}/deactivate")
    assert response.status_code == 302
    assert db.session.get(User, target.id) is not None


def test_a_post_carries_the_csrf_token_and_without_it_is_refused(client, login_as):
    login_as("admin")
    target = create_user("student")
    refused = client.post(f"/admin/users/{target.id}/deactivate", csrf=False)
    assert refused.status_code == 400 and "The form expired" in refused.get_data(as_text=True)
    assert _status_of(target.id) == UserStatus.ACTIVE.value
    assert client.post(f"/admin/users/{target.id}/deactivate").status_code == 302
    assert _status_of(target.id) == UserStatus.DEACTIVATED.value


def test_a_token_from_another_session_is_refused(app, client, login_as):
    login_as("admin")
    target = create_user("student")
    stranger = app.test_client()
    response = client.post(f"/admin/users/{target.id}/deactivate", csrf=False,
                           headers={"X-CSRFToken": stranger.csrf_token()})
    assert response.status_code == 400


def test_statement_counts_leave_savepoints_out(statements):
    db.session.execute(text("SELECT 1"))  # the test's transaction is open
    with statements() as counter, db.session.begin_nested():
        db.session.execute(text("SELECT 2"))
    sent = [statement for statement in counter.statements if "set_config" not in statement]
    assert sent == ["SELECT 2"], counter.statements
