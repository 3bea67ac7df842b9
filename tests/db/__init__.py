"""Database tests: migrations, audit trail, row-level security, runtime checks and the doctor.

``separate_app`` gives a test its own throwaway database and app, for what must not run inside
the session's rolled-back transaction (migrations, role grants, a database not yet migrated).
Use the app through ``with app.app_context():``, so commands and queries reach its database
rather than the session's.
"""

from __future__ import annotations

from contextlib import contextmanager

import psycopg
from psycopg import sql

from portal.db.urls import libpq_url
from tests.conftest import _admin_url, build_database, destroy_database, make_app


def admin_execute(statement: sql.Composable | str, params=None) -> None:
    """Run one statement as the server's superuser (autocommit)."""
    admin_url, _ = _admin_url()
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(statement, params)


@contextmanager
def other_app(owner_url: str, app_url: str, **config):
    """An app on other URLs than the session's. Creating an app points the process-wide job
    queue at it; the previous app gets it back afterwards."""
    from portal.db import db
    from portal.platform import jobs

    previous = jobs._flask_app
    application = make_app(owner_url, app_url, **config)
    try:
        yield application
    finally:
        with application.app_context():
            db.engine.dispose()
        if previous is not None:
            jobs.configure(previous)


@contextmanager
def separate_app(name: str, *, migrate: bool = True, **config):
    """A fresh database ``name`` (built by the real migrations unless ``migrate`` is false) and
    an app on it; yields ``(app, owner_url, app_url)`` and drops the database afterwards."""
    from flask_migrate import upgrade

    owner_url, app_url = build_database(name)
    try:
        with other_app(owner_url, app_url, **config) as application:
            if migrate:
                with application.app_context():
                    upgrade()
            yield application, owner_url, app_url
    finally:
        destroy_database(name, (owner_url, app_url))
