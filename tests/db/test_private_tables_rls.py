"""Row-level security on the tables that held private data with none (migration 0008): the audit
trail, users (and their password hashes), students, the e-mail outbox and the job queue. Each is
read as one identity with no WHERE clause at all, through the app role."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from portal.accounts.models import Student, User
from portal.db import db
from portal.db.audit import AuditLog
from portal.db.context import ANONYMOUS_WEB, Actor, acting_as
from portal.db.urls import libpq_url
from portal.platform.email.models import Email
from portal.platform.email.services import queue_email
from tests.factories import create_notification, create_user
from tests.helpers import as_user
from tests.rls import visible

#: No identity at all: what code that forgot the context, or a bare connection, gets.
NOBODY = Actor(label="")


def nobody():
    return acting_as(NOBODY, db.session)


def as_role(user, role):
    return as_user(user, role)


@pytest.fixture
def people():
    return {role: create_user(role) for role in ("student", "faculty", "compliance", "admin")} | {
        "other": create_user("student")}


def test_the_tables_have_row_level_security_enabled_and_forced():
    tables = ("audit_log", "users", "students", "emails", "procrastinate_jobs", "procrastinate_events",
              "procrastinate_periodic_defers", "procrastinate_workers")
    rows = dict(db.session.execute(text(
        "SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY(:t) AND relnamespace = 'public'::regnamespace"), {"t": list(tables)}).all())
    assert rows == dict.fromkeys(tables, True)


# ---------------------------------------------------------------- item: the audit trail

def test_the_audit_trail_is_read_only_by_admins_compliance_and_system(people):
    # the trail's copy of a private row (a notification only its owner may read)
    note = create_notification(people["student"], "private to the student")
    copies = set(db.session.scalars(select(AuditLog.id).where(AuditLog.table_name == "notifications",
                                                               AuditLog.row_id == str(note.id))))
    assert copies
    with nobody():
        assert visible(AuditLog) == set()
    for role in ("student", "faculty"):
        with as_user(people[role]):
            assert visible(AuditLog) == set(), role
    with as_user(people["student"]):  # not even the trail of their own rows
        assert db.session.scalar(select(AuditLog.id).where(AuditLog.id.in_(copies))) is None
    for role in ("compliance", "admin"):
        with as_user(people[role]):
            assert copies <= visible(AuditLog), role
    with acting_as(Actor.system("tests"), db.session):
        assert copies <= visible(AuditLog)


def test_the_audit_trigger_still_writes_for_a_student_who_cannot_read_the_trail(people):
    with as_user(people["student"]):
        note = create_notification(people["student"], "written by the student")
        assert visible(AuditLog) == set()
    [row] = db.session.scalars(select(AuditLog).where(AuditLog.row_id == str(note.id)))
    assert row.actor == f"user:{people['student'].id}" and row.action == "INSERT"


def test_a_bare_app_role_connection_reads_no_audit_row(database_urls):
    """On a plain connection of the app role: a write leaves its audit row, which the same
    transaction then reads only while it claims a role that may."""
    _, app_url = database_urls
    with psycopg.connect(libpq_url(app_url)) as conn:
        conn.execute("SELECT set_config('app.role', 'system', true), set_config('app.actor', 'system:tests', true)")
        conn.execute('INSERT INTO users (id, email, "fullName", role, status) '
                     "VALUES (gen_random_uuid(), 'bare-' || gen_random_uuid() || '@tests.example', 'Bare', "
                     "'student', 'active')")
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] >= 1
        for role in ("", "student", "faculty", "anonymous"):
            conn.execute("SELECT set_config('app.role', %s, true)", (role,))
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0, role
        conn.rollback()


# ---------------------------------------------------------------- item: users and their passwords

def test_users_are_invisible_without_an_identity(people):
    ids = {u.id for u in people.values()}
    with nobody():
        assert visible(User) == set()
    for actor in (ANONYMOUS_WEB, Actor.for_user(people["student"].id, "student")):
        with acting_as(actor, db.session):
            assert ids <= visible(User)  # login, the session lookup, names on pages


def test_no_query_reads_the_password_hash_column(people):
    with pytest.raises(DBAPIError) as caught, db.session.begin_nested():
        db.session.execute(text('SELECT "passwordHash" FROM users'))
    assert isinstance(caught.value.orig, pg.InsufficientPrivilege)
    with pytest.raises(DBAPIError) as caught, db.session.begin_nested():
        db.session.execute(text("SELECT to_jsonb(u) FROM users AS u"))
    assert isinstance(caught.value.orig, pg.InsufficientPrivilege)


def _hash_of(user) -> str | None:
    return db.session.scalar(text("SELECT user_password_hash(:id)"), {"id": user.id})


def test_the_password_hash_function_answers_only_who_may_ask(people):
    student, other = people["student"], people["other"]
    stored = _hash_of(student)
    assert stored and stored.startswith("$argon2")
    with as_user(student):
        assert _hash_of(student) == stored  # changing one's own password
        assert _hash_of(other) is None
    for role in ("faculty", "compliance"):
        with as_user(people[role]):
            assert _hash_of(student) is None, role
    with nobody():
        assert _hash_of(student) is None
    with acting_as(ANONYMOUS_WEB, db.session):  # the login form, before anyone is known
        assert _hash_of(student) == stored
    with as_user(people["admin"]):  # not even administrators ...
        assert _hash_of(student) is None
        # ... who learn only whether a password is set (reactivating an account asks it)
        assert db.session.scalar(text("SELECT user_has_password(:id)"), {"id": student.id}) is True
        assert db.session.scalar(text("SELECT user_has_password(:id)"), {"id": people["admin"].id}) is True
    with nobody():
        assert db.session.scalar(text("SELECT user_has_password(:id)"), {"id": student.id}) is None


def test_the_model_reads_the_hash_through_the_function(people):
    student = people["student"]
    stored = _hash_of(student)
    db.session.expunge_all()
    loaded = db.session.scalars(select(User).where(User.id == student.id)).one()
    assert "password_hash" not in loaded.__dict__  # deferred: lists of users never carry it
    assert loaded.password_hash == stored
    db.session.expunge_all()
    with as_user(people["faculty"]):
        assert db.session.get(User, student.id).password_hash is None


# ---------------------------------------------------------------- item: students

def test_students_see_only_their_own_profile(people):
    mine, theirs = people["student"].student.id, people["other"].student.id
    with nobody():
        assert visible(Student) == set()
    with as_user(people["student"]):
        assert visible(Student) == {mine}
    with as_user(people["faculty"]):
        assert visible(Student) == set()
    for role in ("compliance", "admin"):
        with as_user(people[role]):
            assert {mine, theirs} <= visible(Student), role


# ---------------------------------------------------------------- item: the e-mail outbox

def test_emails_are_read_only_by_admins_and_the_worker(app, people):
    student = people["student"]
    with app.test_request_context(), acting_as(ANONYMOUS_WEB, db.session):
        # registration queues mail before anyone is logged in
        email = queue_email(student.email, "verify_email", user_id=student.id, user=student,
                            link="https://portal.test/auth/verify/secret-token")
    with nobody():
        assert visible(Email) == set()
    for role in ("student", "faculty", "compliance"):
        with as_user(people[role]):
            assert visible(Email) == set(), role  # not even one's own mail with its link
    with as_user(people["admin"]):
        assert email.id in visible(Email)
    with acting_as(Actor.system("worker"), db.session):
        assert email.id in visible(Email)


# ---------------------------------------------------------------- item: the job queue

def _job() -> int:
    return db.session.scalar(text(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
        "VALUES ('email', 'tests.rls', '{\"email_id\": \"x\"}') RETURNING id"))


def _jobs(job_id) -> int:
    return db.session.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})


def test_the_job_queue_is_reached_only_by_its_connections_and_system_actors(people):
    job_id = _job()  # as system:tests
    assert _jobs(job_id) == 1
    events = text("SELECT count(*) FROM procrastinate_events WHERE job_id = :id")
    assert db.session.scalar(events, {"id": job_id}) >= 1
    with nobody():
        assert _jobs(job_id) == 0
        assert db.session.scalar(events, {"id": job_id}) == 0
    for role in ("student", "admin"):
        with as_user(people[role]):
            assert _jobs(job_id) == 0, role
    with nobody():
        # what the queue's own connections carry (portal.platform.jobs.queue_conninfo)
        db.session.execute(text("SELECT set_config('app.job_queue', 'on', true)"))
        assert _jobs(job_id) == 1


def test_the_queue_connection_string_carries_the_setting(database_urls):
    from portal.platform.jobs import queue_conninfo

    _, app_url = database_urls
    with psycopg.connect(queue_conninfo(app_url)) as conn:
        assert conn.execute("SELECT current_setting('app.job_queue', true)").fetchone()[0] == "on"
        conn.rollback()
    with psycopg.connect(libpq_url(app_url)) as conn:
        assert conn.execute("SELECT current_setting('app.job_queue', true)").fetchone()[0] in (None, "")
        conn.rollback()


# ---------------------------------------------------------------- nothing planted on a pooled connection

def test_the_app_role_cannot_create_temporary_tables(database_urls):
    """A temporary table would shadow the real one of its name for the connection's life."""
    _, app_url = database_urls
    with psycopg.connect(libpq_url(app_url)) as conn:
        assert conn.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0] is False
        with pytest.raises(pg.InsufficientPrivilege):
            conn.execute("CREATE TEMPORARY TABLE users (id uuid)")
        conn.rollback()


# ---------------------------------------------------------------- what a forged context still cannot do

FORGED = "SELECT set_config('app.role', 'system', true), set_config('app.actor', 'system:forged', true)"


@pytest.mark.parametrize("statement", [
    'SELECT "passwordHash" FROM users',  # the secret column, whatever the context
    "UPDATE audit_log SET actor = 'x' WHERE false",  # the trail cannot be rewritten ...
    "DELETE FROM audit_log WHERE false",  # ... nor erased
    "DELETE FROM transactions WHERE false",  # the ledger is append-only
    "ALTER TABLE users DISABLE ROW LEVEL SECURITY",  # policies belong to the owner
    "DROP POLICY identified ON users",
    "CREATE TABLE public.planted (id int)",  # no schema rights
    "CREATE TEMPORARY TABLE users (id uuid)",  # nothing planted on a pooled connection
])
def test_a_forged_context_cannot_reach_past_row_security(database_urls, statement):
    """A statement injected into the app's connection can claim any identity with set_config
    (README, "Row-level security and its limits"): it then reads the rows that identity reads.
    What the claim does not give is listed here."""
    _, app_url = database_urls
    with psycopg.connect(libpq_url(app_url)) as conn:
        conn.execute(FORGED)
        with pytest.raises(pg.InsufficientPrivilege):
            conn.execute(statement)
        conn.rollback()


def test_the_limit_a_statement_that_claims_system_reads_what_system_reads(people):
    """The documented limit, kept visible: row security trusts the transaction's settings."""
    note = create_notification(people["other"], "someone else's")
    with as_user(people["student"]):
        assert db.session.scalar(select(AuditLog.id).where(AuditLog.row_id == str(note.id))) is None
        db.session.execute(text(FORGED))
        assert db.session.scalar(select(AuditLog.id).where(AuditLog.row_id == str(note.id))) is not None


def test_a_forged_context_cannot_become_another_database_role(database_urls):
    owner_url, app_url = database_urls
    owner = psycopg.conninfo.conninfo_to_dict(libpq_url(owner_url)).get("user")
    with psycopg.connect(libpq_url(app_url)) as conn:
        conn.execute(FORGED)
        row = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False)
        with pytest.raises(pg.InsufficientPrivilege):
            conn.execute(f'SET ROLE "{owner}"')
        conn.rollback()


def test_an_admin_reactivates_an_account_without_reading_its_hash(people):
    from portal.accounts import services as accounts
    from portal.accounts.models import UserStatus

    admin = people["admin"]
    target, invited = people["other"], create_user("faculty", password=None)
    for user in (target, invited):
        user.move_to(UserStatus.DEACTIVATED)
    db.session.flush()
    db.session.expunge_all()  # as in a request: nothing loaded yet
    admin = db.session.get(User, admin.id)
    with as_user(admin):
        assert accounts.reactivate(admin, target.id).status == UserStatus.ACTIVE
        assert accounts.reactivate(admin, invited.id).status == UserStatus.INVITED


def test_a_student_cannot_add_a_profile_to_someone_else(people):
    faculty = people["faculty"]
    with as_user(people["student"]), pytest.raises(DBAPIError) as caught, db.session.begin_nested():
        db.session.add(Student(user_id=faculty.id, student_number="AZ-FORGED01"))
        db.session.flush()
    assert isinstance(caught.value.orig, pg.InsufficientPrivilege)
    with acting_as(ANONYMOUS_WEB, db.session), db.session.begin_nested():  # registration
        db.session.add(Student(user_id=faculty.id, student_number="AZ-REGISTER1"))
        db.session.flush()
