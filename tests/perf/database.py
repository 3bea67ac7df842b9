"""The bench's databases: ``azora_bench`` with the demo data at scale (built once, reused after),
and scratch databases on the same server for the baselines (Fortunes, pgbench)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from portal.db.urls import libpq_url, with_database
from tests.perf import settings


def server_admin_url() -> str:
    """A superuser URL of the server the bench database is on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from portal.db import embedded

    return embedded.admin_url()


def prepare_database() -> tuple[str, str]:
    """(owner URL, app URL) of the bench database (on the embedded server, or a fresh one on the
    server of ``TEST_DATABASE_URL`` when that is set)."""
    if os.environ.get("TEST_DATABASE_URL"):
        from tests.conftest import build_database

        return build_database(settings.DATABASE)
    from portal.db import embedded

    found = embedded.ensure(settings.DATABASE)
    return found.owner_url, found.app_url


def make_local_app(owner_url: str, app_url: str):
    """The app in this process, on the bench database (migrations, seeding, finding ids,
    counting statements, ``ledger.post``)."""
    from portal.app import create_app

    return create_app({
        "AZORA_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": app_url,
        "MIGRATION_DATABASE_URL": owner_url,
        "JOB_QUEUE": "memory",
        # The in-process client logs in and starts a quiz attempt without fetching a form first.
        "WTF_CSRF_ENABLED": False,
    })


def migrate_and_seed(app) -> str:
    """Migrate; load the demo data at ``settings.STUDENTS`` unless the database holds it already
    (a database seeded once is reused as it is); return the demo password."""
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from portal import demo
    from portal.accounts.models import User
    from portal.db import db, unit_of_work
    from portal.db.context import Actor
    from portal.learning.demo import LARGE_COURSE_SLUG
    from portal.learning.education.models import Course

    with app.app_context():
        upgrade()
    # As a system actor: without one, row-level security hides the other accounts.
    with app.app_context(), unit_of_work(Actor.system("bench")):
        have = db.session.scalar(select(func.count()).select_from(User).where(User.email.like("scale%@azora.example")))
        large = db.session.scalar(select(Course.id).where(Course.slug == LARGE_COURSE_SLUG))
    if have >= settings.STUDENTS and (large is not None or settings.STUDENTS < demo.LEARNING_SCALE):
        print(f"  {settings.DATABASE} holds {have} scale students already: not seeding", flush=True)
        return demo.demo_password()
    print(f"  seeding: flask seed-demo --scale {settings.STUDENTS} (minutes at 10,000) ...", flush=True)
    result = app.test_cli_runner().invoke(args=["seed-demo", "--scale", str(settings.STUDENTS)])
    if result.exit_code != 0:
        raise SystemExit(f"seed-demo failed:\n{result.output}\n{result.exception!r}")
    # Fresh statistics after the bulk load, as autovacuum would gather a little later: plans
    # made on empty-table estimates would measure the planner, not the pages.
    with psycopg.connect(libpq_url(app.config["MIGRATION_DATABASE_URL"]), autocommit=True) as conn:
        conn.execute("ANALYZE")
    return demo.demo_password()


@contextmanager
def scratch_database(suffix: str, owner: str | None = None) -> Iterator[str]:
    """A new, empty database ``<bench database>_<suffix>`` on the bench's server (owned by the
    role ``owner`` if given), dropped when the block ends. Yields its superuser URL."""
    admin = server_admin_url()
    name = sql.Identifier(f"{settings.DATABASE}_{suffix}")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    create = sql.SQL("CREATE DATABASE {}").format(name)
    if owner:
        create = sql.SQL("{} OWNER {}").format(create, sql.Identifier(owner))
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(create)
    try:
        yield with_database(admin, f"{settings.DATABASE}_{suffix}")
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(drop)
