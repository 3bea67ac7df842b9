"""Alembic environment: migrations run as the database owner (MIGRATION_DATABASE_URL), never
as the app role, and act as the named system actor ``system:migrations`` so data changes reach
the audit trail like any other write."""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import create_engine, pool, text

config = context.config
if config.config_file_name and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ARG001 - Alembic's hook signature
    """Leave the job queue's own tables (installed from its schema file) to the job queue, and
    the monthly partitions of ``events`` (``events_YYYY_MM``, migration 0018) to the analytics jobs."""

    def is_partition(table: str) -> bool:
        return len(table) == 14 and table.startswith("events_") and table[7:].replace("_", "").isdigit()

    if type_ == "table" and (name.startswith("procrastinate_") or is_partition(name)):
        return False
    if type_ in {"index", "column", "unique_constraint", "foreign_key_constraint"}:
        table = getattr(getattr(obj, "table", None), "name", "") or ""
        if table.startswith("procrastinate_") or is_partition(table):
            return False
    return True


def _owner_url() -> str:
    return current_app.config["MIGRATION_DATABASE_URL"]


def run_migrations_offline():
    context.configure(url=_owner_url(), target_metadata=target_db.metadata, literal_binds=True,
                      include_object=include_object, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context, revision, directives):  # noqa: ARG001 - Alembic's hook signature
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(_owner_url(), poolclass=pool.NullPool)
        connection = engine.connect()
    else:
        engine, connection = None, connectable
    try:
        context.configure(
            connection=connection,
            target_metadata=target_db.metadata,
            process_revision_directives=process_revision_directives,
            include_object=include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            connection.execute(text(
                "SELECT set_config('app.actor', 'system:migrations', true), set_config('app.role', 'system', true)"
            ))
            context.run_migrations()
    finally:
        if engine is not None:
            connection.close()
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
