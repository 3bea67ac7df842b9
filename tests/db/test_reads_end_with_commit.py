"""A request that only read ends its transaction with COMMIT, so the connection keeps the
statements psycopg prepared (a ROLLBACK makes psycopg deallocate them all, and every page would
plan every statement again on every request); everything else still ends with the rollback.

The requests run on an app of their own with a one-connection pool (each request meets the
connection the one before used), against the session's database; they commit nothing: the
writing probe's row is rolled back."""

from __future__ import annotations

import uuid

import pytest
from flask import abort
from sqlalchemy import text

from portal.db import db, reads
from portal.platform.gateway import services as rate_limits
from portal.security.access import public
from tests.factories import create_user

#: The rate-limit key the writing probe counts against (its row never outlives the test: no
#: request commits it).
KEY = f"tests:reads-probe:{uuid.uuid4()}"
#: The statement the probe runs: prepared once a connection has run it five times.
PROBE = "SELECT count(*) FROM pg_class WHERE relname = :name"


@pytest.fixture
def probe_app(database_urls):
    from tests.db import other_app

    owner_url, app_url = database_urls
    with other_app(owner_url, app_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0}) as application:

        @application.route("/_probe/read", methods=["GET", "POST"])
        @public
        def read():
            db.session.execute(text(PROBE), {"name": "pg_class"}).scalar_one()
            return "ok"

        @application.route("/_probe/read-then-refuse")
        @public
        def read_then_refuse():
            db.session.execute(text(PROBE), {"name": "pg_class"}).scalar_one()
            abort(404)

        @application.route("/_probe/write-uncommitted")
        @public
        def write_uncommitted():
            rate_limits.hit(KEY, 60)  # an INSERT ... ON CONFLICT, through the service
            return "ok"

        @application.route("/_probe/prepared")
        @public
        def prepared():
            return {"count": db.session.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()}

        @application.route("/_probe/written")
        @public
        def written():
            # The probe's own count is 1 if the earlier write was not kept.
            return {"kept": rate_limits.hit(KEY, 60).count > 1}

        yield application


def _prepared(client) -> int:
    return client.get("/_probe/prepared").get_json()["count"]


@pytest.mark.no_db_rollback
def test_reads_keep_their_prepared_statements_across_requests(probe_app):
    client = probe_app.test_client()
    for _ in range(7):
        assert client.get("/_probe/read").status_code == 200
    assert _prepared(client) >= 1


@pytest.mark.no_db_rollback
@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/_probe/read-then-refuse", 404),  # an error answer: rolled back
    ("POST", "/_probe/read", 200),  # not a read by its method: the view commits or it rolls back
])
def test_anything_but_a_successful_read_still_ends_with_the_rollback(probe_app, method, path, status):
    client = probe_app.test_client()
    for _ in range(7):
        client.get("/_probe/read")
    assert _prepared(client) >= 1
    assert client.open(path, method=method).status_code == status
    assert _prepared(client) == 0  # the rollback made psycopg deallocate them


@pytest.mark.no_db_rollback
def test_a_write_the_view_did_not_commit_is_rolled_back_not_committed(probe_app):
    client = probe_app.test_client()
    assert client.get("/_probe/write-uncommitted").status_code == 200
    assert client.get("/_probe/written").get_json()["kept"] is False


# -- The rule itself, on the test's session -------------------------------------------------------


@pytest.fixture
def fresh_transaction():
    """The test's session, its connection's note of writes cleared (the fixtures' inserts are
    the test's, not the request's)."""
    session = db.session()
    user = create_user("student")
    session.connection().info.pop(reads.WROTE, None)
    return session, user


class TestCommitIfUnwritten:

    def test_a_transaction_that_only_read_commits(self, fresh_transaction):
        session, _user = fresh_transaction
        session.execute(text("SELECT 1"))
        assert reads.commit_if_unwritten(session) is True

    def test_a_writing_statement_keeps_the_rollback(self, fresh_transaction):
        session, user = fresh_transaction
        session.execute(text("UPDATE users SET \"fullName\" = \"fullName\" WHERE id = :id"), {"id": user.id})
        assert reads.commit_if_unwritten(session) is False

    def test_an_unsaved_change_keeps_the_rollback(self, fresh_transaction):
        session, user = fresh_transaction
        user.full_name = "Changed Name"
        assert reads.commit_if_unwritten(session) is False

    def test_bookkeeping_writes_do_not_count_as_the_requests(self, fresh_transaction):
        session, user = fresh_transaction
        with reads.bookkeeping(session):
            session.execute(text('UPDATE users SET "fullName" = "fullName" WHERE id = :id'), {"id": user.id})
        assert reads.commit_if_unwritten(session) is True

    def test_a_new_object_keeps_the_rollback(self, fresh_transaction):
        session, _user = fresh_transaction
        from portal.accounts.models import User

        session.add(User(email="unsaved@tests.example", full_name="Not Saved"))
        assert reads.commit_if_unwritten(session) is False


def test_a_read_keeps_the_login_sessions_touch(client, login_as):
    """A logged-in page marks its session used (at most once a minute); a read now keeps that
    mark, so a session used only to read is not ended as idle. (Before, the mark went with the
    read's rollback.)"""
    from datetime import timedelta

    from sqlalchemy import select

    from portal.compliance.security.models import SessionValidation
    from portal.db.base import utcnow

    user = login_as("student")
    record = db.session.scalar(select(SessionValidation).where(SessionValidation.user_id == user.id))
    record.last_seen_at = utcnow() - timedelta(minutes=30)
    db.session.commit()

    assert client.get("/notifications").status_code == 200
    db.session.refresh(record)
    assert record.last_seen_at > utcnow() - timedelta(minutes=1)
