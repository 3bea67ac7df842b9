"""The migrations build the schema the models describe, and can be undone and redone.

These tests run on a database of their own, outside the per-test rolled-back transaction.
"""

from __future__ import annotations

import ast
import pprint
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import create_engine, inspect, pool, text

from portal.config import PROJECT_ROOT
from portal.db import db
from tests.conftest import TEST_DB
from tests.db import separate_app

pytestmark = pytest.mark.no_db_rollback

#: Named after the run's database, so parallel runs and workers each build their own.
MIGRATION_DB = f"{TEST_DB}_mig"


def _include_object():
    """The ``include_object`` filter of migrations/env.py itself (env.py runs Alembic when
    imported, so the function is compiled from its source)."""
    source = Path(PROJECT_ROOT / "migrations" / "env.py").read_text()
    tree = ast.parse(source)
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "include_object"]
    namespace: dict = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "migrations/env.py", "exec"), namespace)  # noqa: S102
    return namespace["include_object"]


def _heads() -> set[str]:
    config = current_app.extensions["migrate"].migrate.get_config()
    return set(ScriptDirectory.from_config(config).get_heads())


def _owner_engine():
    return create_engine(current_app.config["MIGRATION_DATABASE_URL"], poolclass=pool.NullPool)


def _state(engine) -> tuple[set[str], set[str], set[str]]:
    """(current revisions, public tables, public functions and types) of the database."""
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
        tables = set(inspect(conn).get_table_names())
        functions = set(conn.execute(text(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' UNION ALL "
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = 'public' AND (t.typtype = 'e' OR t.typrelid IN "
            "(SELECT oid FROM pg_class WHERE relkind = 'c'))"
        )).scalars())
    return current, tables, functions


@pytest.fixture
def empty_app():
    """A database with no schema, for one test (each test migrates it its own way)."""
    with separate_app(MIGRATION_DB, migrate=False) as (application, _owner, _app):
        yield application


def test_upgrade_from_empty_reaches_head_then_downgrade_and_upgrade_again(empty_app):
    from flask_migrate import downgrade, upgrade

    with empty_app.app_context():
        engine = _owner_engine()
        heads = _heads()
        assert heads, "the migrations have no head"
        current, tables, _ = _state(engine)
        assert current == set()
        assert "users" not in tables

        upgrade()
        current, tables, functions = _state(engine)
        assert current == heads
        model_tables = set(db.metadata.tables)
        assert model_tables <= tables, f"missing after upgrade: {sorted(model_tables - tables)}"
        assert {"procrastinate_jobs", "procrastinate_periodic_defers"} <= tables
        assert {"audit_row_change", "audit_log_append_only", "procrastinate_job_to_defer_v1"} <= functions

        downgrade(revision="base")
        current, tables, functions = _state(engine)
        assert current == set()
        assert tables <= {"alembic_version"}, f"left behind by the downgrade: {sorted(tables)}"
        assert not {f for f in functions if f.startswith(("audit_", "procrastinate_"))}, sorted(functions)

        upgrade()
        current, tables, _ = _state(engine)
        assert current == heads
        assert model_tables <= tables
        engine.dispose()


def test_models_and_migrated_schema_do_not_differ(empty_app):
    from flask_migrate import upgrade

    with empty_app.app_context():
        upgrade()
        engine = _owner_engine()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_object": _include_object(),
                "compare_type": True,
                "target_metadata": db.metadata,
            })
            diff = compare_metadata(context, db.metadata)
        engine.dispose()
    assert diff == [], "models and migrations differ:\n" + pprint.pformat(diff)


def test_env_filter_leaves_job_queue_tables_alone():
    """The filter the comparison relies on: procrastinate's tables and their parts are skipped,
    the portal's own are compared."""
    include = _include_object()
    jobs = db.metadata.tables.get("procrastinate_jobs")
    assert jobs is None  # the job queue's tables are not models
    assert include(None, "procrastinate_jobs", "table", True, None) is False
    assert include(db.metadata.tables["users"], "users", "table", False, None) is True
    index = next(iter(db.metadata.tables["users"].indexes))
    assert include(index, index.name, "index", False, None) is True
