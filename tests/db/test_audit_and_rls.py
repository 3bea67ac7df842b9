"""The audit trail (a trigger on every domain table) and row-level security plumbing."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import delete, event, select, text

from portal.accounts.models import User
from portal.db import context as db_context
from portal.db import db
from portal.db.audit import AuditLog
from portal.db.urls import libpq_url
from tests import conftest
from tests.factories import create_notification, create_user


def _audit_rows(table: str, row_id) -> list[AuditLog]:
    return list(db.session.scalars(
        select(AuditLog).where(AuditLog.table_name == table, AuditLog.row_id == str(row_id))
        .order_by(AuditLog.created_at, AuditLog.id)
    ))


def _txid() -> int:
    return db.session.execute(text("SELECT txid_current()")).scalar()


def _models():
    return [m.class_ for m in db.Model.registry.mappers if getattr(m.class_, "__tablename__", None)]


def _trigger_args() -> dict[str, tuple[str, ...]]:
    """{table: secret columns passed to its audit trigger} as installed in the database."""
    rows = db.session.execute(text(
        "SELECT c.relname, t.tgnargs, t.tgargs FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = 'audit_row_change' AND NOT t.tgisinternal"
    ))
    found = {}
    for table, nargs, raw in rows:
        parts = bytes(raw).split(b"\x00")[:nargs]
        found[table] = tuple(p.decode() for p in parts)
    return found


# ---------------------------------------------------------------- what the trail records

def test_insert_update_delete_of_a_user_are_audited_with_actor_and_values():
    user = create_user("student", full_name="Audit Person")
    txid = _txid()

    [created] = _audit_rows("users", user.id)
    assert created.action == "INSERT"
    assert created.actor == "system:tests"
    assert created.actor_role == "system"
    assert created.transaction_id == txid
    assert created.old_values is None
    assert created.new_values["email"] == user.email
    assert created.new_values["fullName"] == "Audit Person"
    assert created.new_values["id"] == str(user.id)

    user.full_name = "Audit Renamed"
    db.session.flush()
    [update] = [r for r in _audit_rows("users", user.id) if r.action == "UPDATE"]
    assert update.old_values["fullName"] == "Audit Person"
    assert update.new_values["fullName"] == "Audit Renamed"
    assert update.transaction_id == txid

    user_id = user.id
    db.session.execute(delete(User).where(User.id == user_id))
    rows = {r.action: r for r in _audit_rows("users", user_id)}
    assert sorted(rows) == ["DELETE", "INSERT", "UPDATE"]
    assert rows["DELETE"].old_values["fullName"] == "Audit Renamed"
    assert rows["DELETE"].new_values is None
    assert rows["DELETE"].transaction_id == txid
    # the profile went with it (ON DELETE CASCADE), and that is audited too
    student_deletes = db.session.scalars(select(AuditLog).where(
        AuditLog.table_name == "students", AuditLog.action == "DELETE",
        AuditLog.old_values["userId"].astext == str(user_id))).all()
    assert len(student_deletes) == 1


def test_tables_without_secret_columns_record_row_id_and_values():
    """Tables audited with no secret columns (students, faculty, notifications) record their
    rows in full too."""
    student = create_user("student")
    faculty = create_user("faculty")
    note = create_notification(student, "audited note")
    for table, row in (("students", student.student), ("faculty", faculty.faculty), ("notifications", note)):
        [created] = _audit_rows(table, row.id)
        assert created.action == "INSERT"
        assert created.new_values is not None and created.new_values["id"] == str(row.id), table
    [created] = _audit_rows("notifications", note.id)
    assert created.new_values["title"] == "audited note"
    assert created.new_values["userId"] == str(student.id)


def test_acting_user_is_the_recorded_actor():
    admin = create_user("admin")
    with db_context.acting_as(db_context.Actor.for_user(admin.id, "admin"), db.session):
        target = create_user("faculty")
    [row] = _audit_rows("users", target.id)
    assert row.actor == f"user:{admin.id}"
    assert row.actor_role == "admin"


def test_secret_columns_never_reach_the_trail():
    user = create_user("student")
    user.password_hash = "changed-" + uuid.uuid4().hex
    db.session.flush()
    user.full_name = "Someone Else"
    db.session.flush()
    rows = _audit_rows("users", user.id)
    assert len(rows) >= 2
    for row in rows:
        for values in (row.old_values, row.new_values):
            if values is not None:
                assert "passwordHash" not in values
                assert not any("changed-" in str(v) for v in values.values())


def test_an_update_of_only_a_secret_column_writes_no_audit_row():
    user = create_user("student")
    before = len(_audit_rows("users", user.id))
    db.session.execute(text('UPDATE users SET "passwordHash" = :h WHERE id = :id'),
                       {"h": "other-hash", "id": user.id})
    assert len(_audit_rows("users", user.id)) == before


def test_trigger_secret_columns_match_the_models():
    """The columns each trigger leaves out are the ones the model declares secret, and every
    declared secret is a real column."""
    installed = _trigger_args()
    for model in _models():
        if not model.__audited__:
            continue
        columns = {c.name for c in model.__table__.columns}
        secret = set(model.__audit_secret_columns__)
        assert secret <= columns, f"{model.__tablename__}: unknown secret columns {secret - columns}"
        assert set(installed[model.__tablename__]) == secret, model.__tablename__
    assert set(installed["users"]) == {"passwordHash"}
    assert set(installed["session_validations"]) == {"tokenHash"}


def test_every_domain_table_has_the_audit_trigger():
    tables = set(db.metadata.tables)
    triggered = set(_trigger_args())
    unaudited = {m.__tablename__ for m in _models() if not m.__audited__}
    # The deliberate exceptions: the trail itself, the rate-limit counters (documented in
    # portal.platform.gateway.models), the tutor's passage index, derived from the audited
    # lessons (portal.learning.tutoring.models), and the cache's derived entries
    # (portal.platform.cache.models), the analytics events, written once and never changed
    # (portal.platform.analytics.models), and the request log, one row per request
    # (portal.platform.gateway.models). A new exception must be added here on purpose.
    assert unaudited == {"audit_log", "rate_limits", "lesson_passages", "cache_entries", "api_logs", "events"}
    assert tables - unaudited == triggered, (
        f"missing: {sorted(tables - unaudited - triggered)}; unexpected: {sorted(triggered - tables)}")


# ---------------------------------------------------------------- no actor, no write

def test_a_write_without_an_actor_fails(database_urls):
    _, app_url = database_urls
    with psycopg.connect(libpq_url(app_url)) as conn:
        # a role but no actor: row security lets the row through, the audit trigger does not
        conn.execute("SELECT set_config('app.role', 'student', true)")
        with pytest.raises(errors.InsufficientPrivilege, match="without an actor"):
            conn.execute(
                'INSERT INTO users (id, email, "fullName", role, status) VALUES (%s, %s, %s, %s, %s)',
                (uuid.uuid4(), f"noactor-{uuid.uuid4().hex[:8]}@tests.example", "No Actor", "student", "active"),
            )
        conn.rollback()


def test_a_write_without_an_actor_fails_through_the_orm_too():
    """A session whose transaction starts with no current actor cannot write."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from portal.accounts.models import Role, UserStatus

    token = db_context.push(None)
    try:
        with Session(db.engine) as session:
            session.add(User(email=f"orm-noactor-{uuid.uuid4().hex[:8]}@tests.example", full_name="No Actor",
                             role=Role.STUDENT, status=UserStatus.ACTIVE))
            # refused by row security (users needs an identity) or, where none, the audit trigger
            with pytest.raises(DBAPIError, match="without an actor|row-level security policy") as caught:
                session.flush()
            assert isinstance(caught.value.orig, errors.InsufficientPrivilege)
    finally:
        db_context.reset(token)


# ---------------------------------------------------------------- audit_log is append-only

@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'tampered' WHERE false",
    "DELETE FROM audit_log WHERE false",
    "TRUNCATE audit_log",
    "INSERT INTO audit_log (actor, action, \"tableName\", \"transactionId\") VALUES ('x', 'INSERT', 'x', 1)",
])
def test_the_app_role_cannot_change_the_audit_log(database_urls, statement):
    _, app_url = database_urls
    with psycopg.connect(libpq_url(app_url)) as conn:
        conn.execute("SELECT set_config('app.actor', 'system:tests', true)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
        conn.rollback()


def test_the_app_role_may_read_the_audit_log(database_urls):
    _, app_url = database_urls
    with psycopg.connect(libpq_url(app_url)) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM audit_log").fetchone()[0] is True
        conn.rollback()


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'tampered' WHERE false",
    "DELETE FROM audit_log WHERE false",
])
def test_even_the_owner_cannot_rewrite_the_audit_log(database_urls, statement):
    owner_url, _ = database_urls
    with psycopg.connect(libpq_url(owner_url)) as conn:
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        conn.rollback()


# ---------------------------------------------------------------- row-level security

def test_notifications_have_row_level_security_enabled_and_forced():
    row = db.session.execute(text(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'notifications'::regclass"
    )).one()
    assert tuple(row) == (True, True)


def test_a_user_sees_only_their_own_notifications():
    alice, bob = create_user("student"), create_user("student")
    mine = create_notification(alice, "for alice")
    create_notification(bob, "for bob")
    db.session.expunge_all()  # read back from the database, not the identity map
    from portal.platform.notifications.models import Notification

    with db_context.acting_as(db_context.Actor.for_user(alice.id, "student"), db.session):
        seen = db.session.scalars(select(Notification).where(
            Notification.user_id.in_([alice.id, bob.id]))).all()
        assert [n.id for n in seen] == [mine.id]
    with db_context.acting_as(db_context.Actor.system("tests"), db.session):
        seen = db.session.scalars(select(Notification).where(
            Notification.user_id.in_([alice.id, bob.id]))).all()
        assert len(seen) == 2


def test_the_running_app_connects_as_a_role_that_does_not_bypass_rls():
    row = db.session.execute(text(
        "SELECT r.rolsuper, r.rolbypassrls, "
        "(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) "
        "FROM pg_roles r WHERE r.rolname = current_user"
    )).one()
    assert tuple(row) == (False, False, 0)


# ---------------------------------------------------------------- the transaction-local identity

def _settings(conn) -> tuple[str, str, str]:
    return tuple(conn.execute(text(
        "SELECT current_setting('app.user_id', true), current_setting('app.role', true), "
        "current_setting('app.actor', true)"
    )).one())


def test_identity_is_set_at_transaction_start_with_bound_parameters():
    from sqlalchemy.orm import Session

    user_id = uuid.uuid4()
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.engine.connect() as conn:
            with db_context.acting_as(db_context.Actor.for_user(user_id, "faculty")), \
                    Session(bind=conn, join_transaction_mode="rollback_only") as session:
                settings = _settings(session)
                session.commit()
            # the next transaction on the same connection, begun without a session (so nothing
            # sets the identity again): the settings did not outlive their transaction
            after = _settings(conn)
            conn.rollback()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)

    assert settings == (str(user_id), "faculty", f"user:{user_id}")
    set_config = [(s, p) for s, p in seen if "set_config('app.user_id'" in s]
    assert set_config, seen
    first_statement = next(s for s, _ in seen if not s.strip().upper().startswith(("BEGIN", "SAVEPOINT")))
    assert "set_config('app.user_id'" in first_statement  # before anything else in the transaction
    statement, params = set_config[0]
    assert str(user_id) not in statement  # never formatted into the SQL
    assert str(user_id) in {str(v) for v in params.values()}
    # transaction-local: nothing carries over into the next transaction
    assert after == ("", "", "")


def test_a_request_runs_as_the_logged_in_user(client, login_as):
    """The session lookup, the request's first statement, sets the user's identity
    (``session_for_request``); every statement of the page after it runs as that user."""
    user = login_as("faculty")
    statements: list[str] = []
    seen_as: list[tuple] = []
    probing = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if probing or conftest._committing_set_up or statement.lstrip().upper().startswith(
                ("SAVEPOINT", "RELEASE", "ROLLBACK")):
            return  # the test harness's own savepoints, and the set-up it writes before the request
        statements.append(statement)
        if "session_for_request" in statement:
            return
        probing.append(True)
        try:
            seen_as.append(tuple(conn.exec_driver_sql(
                "SELECT current_setting('app.user_id', true), current_setting('app.role', true), "
                "current_setting('app.actor', true)").one()))
        finally:
            probing.clear()

    event.listen(db.engine, "after_cursor_execute", capture)
    try:
        assert client.get("/dashboard").status_code == 200
    finally:
        event.remove(db.engine, "after_cursor_execute", capture)
    assert "session_for_request" in statements[0]
    assert not any("set_config('app.user_id'" in s for s in statements)  # no separate statement
    assert len(seen_as) == len(statements) - 1 >= 2
    assert set(seen_as) == {(str(user.id), "faculty", f"user:{user.id}")}
    # after the request the test code's own identity is back
    assert db.session.execute(text("SELECT current_setting('app.actor', true)")).scalar() == "system:tests"


def test_an_idle_session_leaves_the_request_anonymous(client, login_as, app):
    """The lookup's function takes a session that is neither revoked nor expired for live and
    sets its user's identity; the portal then finds it idle and sets the anonymous identity
    again before anything else runs."""
    from datetime import timedelta

    from portal.compliance.security.models import SessionValidation
    from portal.db.base import utcnow

    user = login_as("student")
    record = db.session.scalars(select(SessionValidation).where(SessionValidation.user_id == user.id)).one()
    record.last_seen_at = utcnow() - timedelta(minutes=app.config["SESSION_IDLE_MINUTES"], seconds=5)
    db.session.commit()
    seen_as: list[tuple] = []
    probing = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if probing or conftest._committing_set_up or statement.lstrip().upper().startswith(
                ("SAVEPOINT", "RELEASE", "ROLLBACK")):
            return  # the test harness's own savepoints, and the set-up it writes before the request
        probing.append(True)
        try:
            seen_as.append((statement.split("(")[0][:40], *conn.exec_driver_sql(
                "SELECT current_setting('app.user_id', true), current_setting('app.role', true)").one()))
        finally:
            probing.clear()

    event.listen(db.engine, "after_cursor_execute", capture)
    try:
        response = client.get("/dashboard")
    finally:
        event.remove(db.engine, "after_cursor_execute", capture)
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    first, *rest = seen_as
    assert first[1:] == (str(user.id), "student")  # what the function set ...
    assert rest and {tuple(who) for _, *who in rest} == {("", "anonymous")}  # ... undone at once
