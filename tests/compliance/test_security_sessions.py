"""Login sessions: the user's own sessions page (see own only, end one, end the others, cannot
end someone else's by guessing its id), admins ending a user's sessions, a password change
ending the others, the ``sessions_ended`` events, and row-level security on
``session_validations`` proved as the app role with queries that carry no WHERE clause."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from portal.app import session_policy
from portal.compliance.security import services as sessions
from portal.compliance.security.models import SecurityEvent, SecurityEventKind, SessionValidation
from portal.db import context as db_context
from portal.db import db
from portal.security.tokens import hash_session_token
from tests.factories import PASSWORD, create_user

HTMX = {"HX-Request": "true"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")


def _open(app, user, ip="203.0.113.4", ua=IPHONE) -> str:
    return sessions.start_session(user, ip=ip, user_agent=ua, policy=session_policy(app))


def _rows_in(body: str) -> int:
    return len(re.findall(r'<tr id="session-[0-9a-f]{8}-', body))


def _row(token: str) -> SessionValidation:
    db.session.expire_all()
    return db.session.scalars(select(SessionValidation).where(
        SessionValidation.token_hash == hash_session_token(token))).one()


def _live_ids(user) -> set:
    db.session.expire_all()
    return {s.id for s in db.session.scalars(select(SessionValidation).where(
        SessionValidation.user_id == user.id, SessionValidation.revoked_at.is_(None)))}


def _ended_events(user) -> list[SecurityEvent]:
    return list(db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.kind == SecurityEventKind.SESSIONS_ENDED, SecurityEvent.user_id == user.id)))


@pytest.fixture
def me(client, make_user):
    user = make_user("student")
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD},
                           headers={"User-Agent": FIREFOX})
    assert response.status_code == 302
    return user


# -- The page -------------------------------------------------------------------------------------

def test_the_page_lists_only_my_live_sessions_and_marks_this_device(client, app, me):
    phone = _open(app, me)
    stranger = create_user("student")
    _open(app, stranger, ip="192.0.2.200")
    ended = _open(app, me, ip="192.0.2.201")
    sessions.end_session(ended)
    page = client.get("/auth/sessions", headers={"User-Agent": FIREFOX})
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert _rows_in(body) == 2
    assert "Firefox on Linux" in body and "Safari on iPhone" in body
    assert "203.0.113.4" in body and "192.0.2.200" not in body and "192.0.2.201" not in body
    this = re.search(r'<tr id="session-([0-9a-f-]+)" class="this-device">', body).group(1)
    assert this != str(_row(phone).id)
    assert body.count("this device") == 1


def test_ending_another_of_my_sessions_with_htmx_and_without(client, app, me):
    first, second = _open(app, me), _open(app, me, ip="203.0.113.5")
    fragment = client.post(f"/auth/sessions/{_row(first).id}/end", headers=HTMX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and body.strip().startswith('<section id="session-list"')
    assert "The session is ended." in body and _rows_in(body) == 2
    assert _row(first).revoked_at is not None and _row(first).revoked_reason == "ended_by_user"
    plain = client.post(f"/auth/sessions/{_row(second).id}/end")
    assert plain.status_code == 302 and plain.headers["Location"].endswith("/auth/sessions")
    assert _row(second).revoked_at is not None
    events = _ended_events(me)
    assert len(events) == 2 and all(e.details == {"count": 1, "how": "one"} for e in events)
    assert client.get("/dashboard").status_code == 200  # this session goes on


def test_someone_elses_session_cannot_be_ended_by_guessing_its_id(client, app, me):
    stranger = create_user("student")
    theirs = _open(app, stranger)
    response = client.post(f"/auth/sessions/{_row(theirs).id}/end")
    assert response.status_code == 404
    assert _row(theirs).revoked_at is None
    assert client.post("/auth/sessions/not-a-uuid/end").status_code == 404
    assert client.post("/auth/sessions/00000000-0000-0000-0000-000000000000/end").status_code == 404
    assert _ended_events(me) == [] and _ended_events(stranger) == []


def test_an_already_ended_session_is_not_found(client, app, me):
    old = _open(app, me)
    sessions.end_session(old)
    assert client.post(f"/auth/sessions/{_row(old).id}/end").status_code == 404


def test_ending_this_session_logs_me_out(client, me):
    body = client.get("/auth/sessions").get_data(as_text=True)
    this = re.search(r'<tr id="session-([0-9a-f-]+)" class="this-device">', body).group(1)
    response = client.post(f"/auth/sessions/{this}/end")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert client.get("/dashboard").status_code == 302


def test_ending_all_other_sessions(client, app, me):
    for ip in ("203.0.113.4", "203.0.113.5", "203.0.113.6"):
        _open(app, me, ip=ip)
    fragment = client.post("/auth/sessions/end-others", headers=HTMX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "3 other sessions ended." in body
    assert _rows_in(body) == 1 and "End all other sessions" not in body
    assert len(_live_ids(me)) == 1
    (event,) = _ended_events(me)
    assert event.details == {"count": 3, "how": "others"} and event.actor_id == me.id
    again = client.post("/auth/sessions/end-others")
    assert again.status_code == 302
    assert "There was no other session to end." in client.get("/auth/sessions").get_data(as_text=True)
    assert client.get("/dashboard").status_code == 200


def test_a_password_change_still_ends_the_other_sessions(client, app, me):
    other = _open(app, me)
    response = client.post("/auth/password", data={"current_password": PASSWORD,
                                                    "new_password": "another long passphrase 42",
                                                    "confirm": "another long passphrase 42"})
    assert response.status_code == 302
    assert _row(other).revoked_reason == "password_changed"
    assert len(_live_ids(me)) == 1 and client.get("/dashboard").status_code == 200


def test_anonymous_visitors_are_sent_to_log_in(client):
    for method, url in (("GET", "/auth/sessions"), ("POST", "/auth/sessions/end-others"),
                        ("POST", "/auth/sessions/00000000-0000-0000-0000-000000000000/end")):
        response = client.open(url, method=method)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


@pytest.mark.parametrize("role", ["student", "faculty", "compliance", "admin"])
def test_every_role_has_its_own_sessions_page(client, login_as, role):
    login_as(role)
    assert client.get("/auth/sessions").status_code == 200
    assert client.get("/auth/sessions", headers=HTMX).status_code == 200


def test_the_sessions_page_keeps_its_statement_budget(client, app, me, statements):
    with statements() as few:
        assert client.get("/auth/sessions").status_code == 200
    for i in range(40):
        _open(app, me, ip=f"192.0.2.{i + 1}")
    db.session.flush()
    with statements() as many:
        assert client.get("/auth/sessions").status_code == 200
    assert many.count == few.count <= 12, many.statements


# -- Admins ---------------------------------------------------------------------------------------

def test_an_admin_ends_all_of_a_users_sessions(client, app, login_as):
    admin = login_as("admin")
    target = create_user("student")
    for ip in ("203.0.113.4", "203.0.113.5"):
        _open(app, target, ip=ip)
    row = client.post(f"/admin/users/{target.id}/end-sessions", headers=HTMX)
    body = row.get_data(as_text=True)
    assert row.status_code == 200 and body.strip().startswith(f'<tr id="user-{target.id}"')
    assert f"Ended 2 sessions of {target.email}." in body
    assert _live_ids(target) == set()
    (event,) = _ended_events(target)
    assert event.actor_id == admin.id and event.details == {"count": 2, "how": "all"}
    plain = client.post(f"/admin/users/{target.id}/end-sessions")
    assert plain.status_code == 302
    assert "Ended 0 sessions" in client.get("/admin/users").get_data(as_text=True)
    assert client.post("/admin/users/00000000-0000-0000-0000-000000000000/end-sessions").status_code == 404


def test_the_user_is_logged_out_at_their_next_request(app, login_as, make_user):
    target = make_user("student")
    theirs = app.test_client()
    assert theirs.post("/auth/login", data={"email": target.email, "password": PASSWORD}).status_code == 302
    assert theirs.get("/dashboard").status_code == 200
    admin_client = app.test_client()
    admin = make_user("admin")
    admin_client.post("/auth/login", data={"email": admin.email, "password": PASSWORD})
    assert admin_client.post(f"/admin/users/{target.id}/end-sessions").status_code == 302
    assert theirs.get("/dashboard").status_code == 302


@pytest.mark.parametrize("role", ["student", "faculty", "compliance"])
def test_only_admins_end_other_peoples_sessions(client, app, login_as, role):
    login_as(role)
    target = create_user("student")
    _open(app, target)
    assert client.post(f"/admin/users/{target.id}/end-sessions").status_code == 403
    assert len(_live_ids(target)) == 1
    with pytest.raises(Exception, match="Only administrators"):
        sessions.admin_end_all(create_user(role), target.id)


def test_the_admin_users_page_shows_end_sessions_and_security_links(client, login_as):
    login_as("admin")
    create_user("student")
    body = client.get("/admin/users").get_data(as_text=True)
    assert "End sessions" in body and "/compliance/security/events" in body and "/compliance/security/blocks" in body


# -- Row-level security ---------------------------------------------------------------------------

def _fresh_transaction_settings() -> None:
    """The tests share one transaction, so a token bound by an earlier login or lookup would
    still be bound: clear it, as a new request's transaction starts."""
    db.session.execute(text("SELECT set_config('app.session_token_hash', '', true)"))


def _count_as(actor, sql="SELECT count(*) FROM session_validations") -> int:
    _fresh_transaction_settings()
    with db_context.acting_as(actor, db.session):
        return db.session.execute(text(sql)).scalar()


def test_rls_is_enabled_and_forced_on_session_validations():
    row = db.session.execute(text(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'session_validations'")).one()
    assert row == (True, True)


def test_rls_a_user_sees_only_their_own_sessions(app):
    alice, bob = create_user("student"), create_user("faculty")
    for _ in range(2):
        _open(app, alice)
    _open(app, bob)
    db.session.flush()
    assert _count_as(db_context.Actor.for_user(alice.id, "student")) == 2
    assert _count_as(db_context.Actor.for_user(bob.id, "faculty")) == 1
    _fresh_transaction_settings()
    with db_context.acting_as(db_context.Actor.for_user(alice.id, "student"), db.session):
        owners = set(db.session.execute(text('SELECT "userId" FROM session_validations')).scalars())
        # and cannot end someone else's: the UPDATE reaches no row
        ended = db.session.execute(text('UPDATE session_validations SET "revokedAt" = now()')).rowcount
    assert owners == {alice.id} and ended == 2
    assert len(_live_ids(bob)) == 1


def test_rls_officers_read_and_admins_manage_every_session(app):
    alice, bob = create_user("student"), create_user("student")
    _open(app, alice)
    _open(app, bob)
    officer, admin = create_user("compliance"), create_user("admin")
    db.session.flush()
    total = _count_as(db_context.Actor.system("tests"))
    assert total >= 2
    assert _count_as(db_context.Actor.for_user(officer.id, "compliance")) == total
    _fresh_transaction_settings()
    with db_context.acting_as(db_context.Actor.for_user(officer.id, "compliance"), db.session):
        assert db.session.execute(text('UPDATE session_validations SET "revokedAt" = now()')).rowcount == 0
    assert _count_as(db_context.Actor.for_user(admin.id, "admin")) == total
    assert _count_as(db_context.Actor.for_user(create_user("student").id, "student")) == 0


def test_rls_anonymous_requests_reach_only_the_session_whose_token_they_hold(app):
    alice, bob = create_user("student"), create_user("student")
    token = _open(app, alice)
    _open(app, bob)
    db.session.flush()
    assert _count_as(db_context.ANONYMOUS_WEB) == 0
    with db_context.acting_as(db_context.ANONYMOUS_WEB, db.session):
        found = sessions.resolve(token, session_policy(app))
        assert found is not None and found[1].id == alice.id
        # the binding lasts for the transaction: exactly that one row is reachable, no other
        assert db.session.execute(text('SELECT "userId" FROM session_validations')).scalars().all() == [alice.id]
        # a wrong token binds its own (matching) hash in place of the first: nothing is reachable
        assert sessions.resolve("not-a-real-token", session_policy(app)) is None
        assert db.session.execute(text("SELECT count(*) FROM session_validations")).scalar() == 0


def test_a_login_as_an_anonymous_request_may_insert_its_own_session(client, make_user):
    user = make_user("student")
    assert client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code == 302
    assert len(_live_ids(user)) == 1


def test_a_password_reset_by_link_still_ends_every_session(client, app, make_user):
    from portal.accounts import services as accounts

    user = make_user("student")
    _open(app, user)
    _open(app, user)
    db.session.commit()
    token = accounts.password_reset_token(user)
    response = client.post(f"/auth/reset/{token}", data={"new_password": "a brand new passphrase 7",
                                                          "confirm": "a brand new passphrase 7"})
    assert response.status_code == 302
    assert _live_ids(user) == set()


def test_user_agent_summaries():
    assert sessions.describe_user_agent(FIREFOX) == "Firefox on Linux"
    assert sessions.describe_user_agent(IPHONE) == "Safari on iPhone"
    assert sessions.describe_user_agent(None) == "Unknown browser"
    assert sessions.describe_user_agent("curl/8.5.0") == "curl"
    assert sessions.describe_user_agent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 "
        "Edg/126.0") == "Edge on Windows"


def test_the_session_lookup_is_planned_for_one_row():
    """``session_by_token`` finds one row by a unique hash; declared so, the planner joins the
    user by its key. Left at PostgreSQL's default of 1000 rows, it read every user into a hash
    table on every request (18 ms at 10,000 users)."""
    rows = db.session.scalar(text("SELECT prorows FROM pg_proc WHERE proname = 'session_by_token'"))
    assert rows == 1
