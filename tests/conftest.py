"""Test harness: one fresh PostgreSQL database per session, built by the real migrations and
used through the real app role; every test runs inside a transaction that is rolled back, and
each test request behaves like a real one (see ``_Client`` and tests/README.md).

``TEST_DATABASE_URL`` (a superuser URL) points the suite at another server; without it the
embedded server under instance/ is used.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from contextlib import contextmanager

import pytest
from flask import has_app_context
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import event
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from portal.db import reads as db_reads
from portal.db.provision import provision_database

#: One database per run; ``AZORA_TEST_DB`` names another so two runs on one server can overlap.
#: Under pytest-xdist each worker process builds and uses a database of its own (``_gw0``, ...),
#: so one worker's committed rows never meet another's tests.
TEST_DB = os.environ.get("AZORA_TEST_DB", "azora_test") + (
    f"_{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else "")


def _commits_rows(item) -> bool:
    return (item.get_closest_marker("e2e") is not None or item.get_closest_marker("no_db_rollback") is not None
            or "/tests/e2e/" in str(item.path))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Tests whose rows are committed (the browser journeys and the races: ``e2e``,
    ``no_db_rollback``) run after every test that is rolled back, each group in the order the run
    chose (pytest-randomly shuffles first). Their rows stay in the session's database, and a
    rolled-back test that reads a whole table (the exchange's rates, a system wallet's balance, the
    loan book) would otherwise see another test's rows, or not, depending on the order."""
    items[:] = [item for item in items if not _commits_rows(item)] + [item for item in items if _commits_rows(item)]


def _admin_url() -> tuple[str, bool]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url, False
    from portal.db import embedded

    return embedded.admin_url(), True


def build_database(name: str) -> tuple[str, str]:
    """A fresh database ``name`` with its own owner and app roles; returns (owner, app) URLs."""
    admin_url, embedded = _admin_url()
    suffix = "" if embedded else "_" + secrets.token_hex(3)
    password = None if embedded else secrets.token_urlsafe(16)
    return provision_database(admin_url, name, f"{name}_owner{suffix}", f"{name}_app{suffix}",
                              owner_password=password, app_password=password, fresh=True)


def destroy_database(name: str, urls: tuple[str, str]) -> None:
    """Drop a database made by ``build_database``, and on an external server its roles too (the
    embedded server's roles have fixed names and are reused)."""
    import psycopg
    from psycopg import sql
    from sqlalchemy import make_url

    from portal.db.urls import libpq_url

    admin_url, embedded = _admin_url()
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not embedded:
            for url in reversed(urls):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(make_url(url).username)))


#: Set by ``_rollback`` while a test runs inside its rolled-back transaction.
_isolated = False
#: Set while the client commits the test's set-up before a request (not counted as statements).
_committing_set_up = False

#: The methods Flask-WTF checks for a CSRF token.
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Client(FlaskClient):
    """A test client whose requests behave like real ones.

    - **Its own app context, session and ``g`` per request.** Flask 3.1 reuses an app context
      already pushed (``_rollback`` pushes one around each test), so a view would share the
      test's database session and the test would see writes the view never committed. Here each
      request pushes a fresh app context, as in production: its session joins the test's
      transaction with a savepoint, a commit releases it, and whatever the view left uncommitted
      is rolled back when the request ends.
    - **The test's set-up is committed first**, as earlier requests would have committed it, and
      the test's session is rolled back after, so the test reads what the request committed.
    - **CSRF as a browser sends it.** Every POST/PUT/PATCH/DELETE carries the token Flask-WTF
      would have put in the page for this client's session, in the ``X-CSRFToken`` header (as
      ``hx-headers`` sends it). ``csrf=False`` sends none, to test the refusal.
    """

    def open(self, *args, csrf: bool = True, **kwargs):
        if csrf and self._method(args, kwargs) in _UNSAFE_METHODS:
            headers = Headers(kwargs.pop("headers", None) or {})
            if "X-CSRFToken" not in headers:
                headers["X-CSRFToken"] = self.csrf_token()
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)

    @staticmethod
    def _method(args, kwargs) -> str:
        if args and isinstance(args[0], EnvironBuilder):
            return args[0].method.upper()
        if args and isinstance(args[0], dict):  # a WSGI environ
            return args[0].get("REQUEST_METHOD", "GET").upper()
        return (kwargs.get("method") or "GET").upper()

    def csrf_token(self) -> str:
        """The signed CSRF token for this client's session, made as ``flask_wtf.csrf.generate_csrf``
        makes it (the raw token kept in the session, the signed one sent with the form)."""
        app = self.application
        field = app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
        with self.session_transaction() as session:
            if not isinstance(session.get(field), str):
                session[field] = hashlib.sha1(os.urandom(64)).hexdigest()  # noqa: S324 - as Flask-WTF does
            raw = session[field]
        return URLSafeTimedSerializer(secret, salt="wtf-csrf-token").dumps(raw)

    def run_wsgi_app(self, environ, buffered=False):
        from portal.db import db
        from portal.platform.analytics import capture as analytics_capture

        global _committing_set_up
        isolated = _isolated and has_app_context()
        if isolated:
            # The test's set-up, as earlier requests would have committed it; its statements
            # (a flush of what the test left pending) are not the request's to count.
            _committing_set_up = True
            try:
                db.session.commit()
                # The set-up's analytics events too: written now, not at the end of the request.
                analytics_capture.flush(db.session)
                # Nor are its writes the request's: a read request ends as in production
                # (``portal.db.reads``), with COMMIT when it wrote nothing itself.
                db.session.get_bind().info.pop(db_reads.WROTE, None)
            finally:
                _committing_set_up = False
        try:
            with self.application.app_context():
                app_iter, status, headers = super().run_wsgi_app(environ, buffered=buffered)
        finally:
            if isolated:
                db.session.rollback()  # the test reads afresh what the request committed
        # A streamed body (a CSV export) is read later: ``stream_with_context`` pushes the
        # request's own app context again for it, as in production.
        return app_iter, status, headers


def make_app(owner_url: str, app_url: str, **extra):
    from portal.app import create_app

    overrides = {
        "AZORA_ENV": "test",
        "TESTING": True,
        "SECRET_KEY": "test-secret-" + secrets.token_hex(8),
        "DATABASE_URL": app_url,
        "MIGRATION_DATABASE_URL": owner_url,
        "JOB_QUEUE": "memory",
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 64,
        "MAIL_BACKEND": "console",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 5, "max_overflow": 5},
        "SERVER_NAME": None,
    }
    overrides.update(extra)
    application = create_app(overrides)
    application.test_client_class = _Client
    return application


@pytest.fixture(scope="session")
def database_urls():
    urls = build_database(TEST_DB)
    yield urls
    destroy_database(TEST_DB, urls)  # WITH (FORCE) ends the pool's connections


@pytest.fixture(scope="session")
def app(database_urls):
    from flask_migrate import upgrade

    owner_url, app_url = database_urls
    application = make_app(owner_url, app_url)
    with application.app_context():
        upgrade()
    return application


class _ConnectionBoundSession(FlaskSQLAlchemySession):
    """Flask-SQLAlchemy's ``get_bind`` returns the app's engine and ignores ``bind=``: the test
    session would then commit on pooled connections, outside the transaction rolled back."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        return bind if bind is not None else self.bind


@pytest.fixture(autouse=True)
def _rollback(request, app):
    """Each test in a transaction that is rolled back (SAVEPOINT mode: a commit releases a
    savepoint). Code in the test itself acts as ``system:tests``; each request of the test client
    gets a session of its own on the same connection (``_Client``)."""
    if request.node.get_closest_marker("e2e") or "no_db_rollback" in request.keywords:
        yield
        return
    from portal.db import context as db_context
    from portal.db import db

    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        original = db.session
        db.session = db._make_scoped_session(
            {"bind": connection, "binds": {}, "join_transaction_mode": "create_savepoint",
             "class_": _ConnectionBoundSession}
        )
        token = db_context.push(db_context.Actor.system("tests"))
        # Each test starts from an empty shared cache: entries committed outside any test's
        # transaction (the browser journeys' live server) would otherwise answer for a while.
        connection.exec_driver_sql(
            "SELECT set_config('app.role', 'system', true); DELETE FROM cache_entries; "
            "SELECT set_config('app.role', '', true)")
        global _isolated
        _isolated = True
        try:
            yield
        finally:
            _isolated = False
            db_context.reset(token)
            db.session.remove()
            db.session = original
            transaction.rollback()
            connection.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(app):
    """Factory: ``make_user(role="student", **fields)`` -> a committed-in-test User."""
    from tests.factories import create_user

    return create_user


@pytest.fixture
def login_as(client, make_user):
    """Log the test client in as a new user of ``role``; returns the user."""
    from tests.factories import PASSWORD

    def login(role: str = "student", **fields):
        user = make_user(role=role, **fields)
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
        assert response.status_code in (302, 204), response.get_data(as_text=True)[:500]
        return user

    return login


#: Statements of the test's savepoints: a real request runs in a transaction of its own, whose
#: BEGIN and COMMIT are not statements sent through a cursor.
_SAVEPOINT_STATEMENTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@contextmanager
def count_statements(engine):
    """Count SQL statements sent through ``engine`` inside the block: ``with ... as counter``
    then ``counter.count`` / ``counter.statements``. The test's savepoints are left out, and so
    is the login session's touch (``portal.db.reads.bookkeeping``): once a minute, it fell into a
    slow test's measured request now and then."""

    class Counter:
        def __init__(self):
            self.statements: list[str] = []

        @property
        def count(self) -> int:
            return len(self.statements)

    counter = Counter()

    def before(conn, cursor, statement, parameters, context, executemany):
        if _committing_set_up or conn.info.get(db_reads.BOOKKEEPING):
            return  # the test's set-up, and the login session's once-a-minute touch
        if not statement.lstrip().upper().startswith(_SAVEPOINT_STATEMENTS):
            counter.statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.fixture
def statements(app):
    from portal.db import db

    return lambda: count_statements(db.engine)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@tests.example"
