"""A lost database connection in the middle of a request (portal/app.py ``database_error``):
a read is run once more on a fresh connection; what still fails, and any write, is a calm 503
with ``Retry-After``, logged as one line without a traceback. Other database errors stay 500s.

The failures are made by replacing one query the page runs; the real thing (a server restart
under load) is tests/db/test_restart.py."""

from __future__ import annotations

import logging

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from blueprints.home import routes as home_routes

HTMX = {"HX-Request": "true"}


def _dropped() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError(
        "consuming input failed: server closed the connection unexpectedly"), connection_invalidated=True)


def _failing(real, failures: int, error=_dropped):
    calls = {"n": 0}

    def query(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error()
        return real(*args, **kwargs)

    return query, calls


@pytest.fixture
def student(login_as):
    return login_as("student")


@pytest.mark.parametrize("dropped", [
    _dropped,
    lambda: sa_exc.OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown(
        "terminating connection due to administrator command")),
    lambda: sa_exc.OperationalError("connect", {}, psycopg.errors.CannotConnectNow(
        "the database system is starting up")),
], ids=["invalidated", "admin-shutdown", "starting-up"])
def test_a_read_that_meets_a_dropped_connection_is_run_again(client, student, monkeypatch, caplog, dropped):
    query, calls = _failing(home_routes.notification_queries.page_for, failures=1, error=dropped)
    monkeypatch.setattr(home_routes.notification_queries, "page_for", query)
    caplog.set_level(logging.WARNING)
    response = client.get("/notifications")
    assert response.status_code == 200
    assert calls["n"] == 2
    assert "Notifications" in response.get_data(as_text=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_read_that_fails_twice_gets_a_calm_503(client, student, monkeypatch, caplog, headers):
    query, calls = _failing(home_routes.notification_queries.page_for, failures=99)
    monkeypatch.setattr(home_routes.notification_queries, "page_for", query)
    caplog.set_level(logging.WARNING)
    response = client.get("/notifications", headers=headers)
    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert calls["n"] == 2  # once, and once more: no loop
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    assert "Please try again in a few seconds." in body
    assert ("<html" in body) == (not headers)
    assert "Traceback" not in body and "psycopg" not in body
    logged = [r for r in caplog.records if r.name == "portal.app"]
    assert [r.levelno for r in logged] == [logging.WARNING]
    assert logged[0].exc_info is None
    # The next request, with the database back, is served as usual.
    monkeypatch.undo()
    assert client.get("/notifications").status_code == 200


def test_a_write_is_not_run_again_but_answered_503(client, student, monkeypatch):
    calls = {"n": 0}

    def mark_all_read(*args, **kwargs):
        calls["n"] += 1
        raise _dropped()

    monkeypatch.setattr(home_routes.notifications, "mark_all_read", mark_all_read)
    response = client.post("/notifications/read-all")
    assert response.status_code == 503 and calls["n"] == 1
    assert "Retry-After" in response.headers


def test_a_database_that_cannot_be_reached_at_all_is_503_for_anyone(client, monkeypatch):
    """The failure can come before the user is known (the session lookup): the page needs no
    query of its own."""
    def unreachable(*args, **kwargs):
        raise sa_exc.OperationalError("connect", {}, psycopg.OperationalError(
            'connection failed: FATAL:  the database system is starting up'))

    from portal.compliance.security import blocks

    monkeypatch.setattr(blocks, "check_request", unreachable)
    response = client.get("/auth/login")
    assert response.status_code == 503
    assert "Please try again in a few seconds." in response.get_data(as_text=True)


@pytest.mark.parametrize("broken", [
    lambda: sa_exc.ProgrammingError("SELECT nope", {}, psycopg.errors.UndefinedColumn("column nope")),
    lambda: sa_exc.OperationalError("SELECT pg_sleep(99)", {}, psycopg.errors.QueryCanceled(
        "canceling statement due to statement timeout")),
], ids=["programming", "statement-timeout"])
def test_other_database_errors_are_still_bugs(client, student, monkeypatch, broken):
    query, _ = _failing(home_routes.notification_queries.page_for, failures=99, error=broken)
    monkeypatch.setattr(home_routes.notification_queries, "page_for", query)
    assert client.get("/notifications").status_code == 500
