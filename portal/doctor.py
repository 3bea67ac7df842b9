"""``flask doctor``: what an operator must know about the database, and whether it is right."""

from __future__ import annotations

import click
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import Migrate
from sqlalchemy import text

from portal.db import db
from portal.db.runtime import role_facts

MIN_SERVER_VERSION = 150000


def _expected_tables() -> tuple[set[str], set[str]]:
    """(audited tables, tables that must have RLS forced) according to the models."""
    audited = set()
    for mapper in db.Model.registry.mappers:
        cls = mapper.class_
        if getattr(cls, "__audited__", True) and getattr(cls, "__tablename__", None):
            audited.add(cls.__tablename__)
    return audited, set(RLS_TABLES)


#: Private tables whose rows RLS guards (each migration that adds one lists it here too).
RLS_TABLES = ("notifications", "audit_log", "users", "students", "emails", "procrastinate_jobs",
              "procrastinate_periodic_defers", "procrastinate_events", "procrastinate_workers", "cache_entries")


def run_checks() -> list[tuple[str, bool, str]]:
    """(what, ok, detail) for each check."""
    checks: list[tuple[str, bool, str]] = []
    with db.engine.connect() as conn:
        facts = role_facts(conn)
        num = conn.execute(text("SELECT current_setting('server_version_num')::int")).scalar()
        checks.append(("server version", num >= MIN_SERVER_VERSION, f"PostgreSQL {facts.server_version}"))
        allow = current_app.config["ALLOW_PRIVILEGED_DB_ROLE"]
        detail = (f"{facts.name}: superuser={'yes' if facts.superuser else 'no'}, "
                  f"bypassrls={'yes' if facts.bypass_rls else 'no'}")
        checks.append(("connected role", not facts.privileged or allow,
                       detail + (" (allowed in development)" if facts.privileged and allow else "")))

        migrate: Migrate = current_app.extensions["migrate"]
        script = ScriptDirectory.from_config(migrate.migrate.get_config())
        heads = set(script.get_heads())
        current = set(MigrationContext.configure(conn).get_current_heads())
        checks.append(("migrations", current == heads,
                       f"database at {', '.join(sorted(current)) or 'nothing'}; code at {', '.join(sorted(heads))}"))

        audited, rls = _expected_tables()
        forced = set(conn.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity"
        )).scalars())
        missing_rls = sorted(rls - forced)
        checks.append(("row-level security", not missing_rls,
                       f"{len(forced)} tables with RLS forced" + (f"; missing: {', '.join(missing_rls)}"
                                                                   if missing_rls else "")))
        triggered = set(conn.execute(text(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = 'audit_row_change' AND NOT t.tgisinternal"
        )).scalars())
        missing_audit = sorted(audited - triggered)
        checks.append(("audit trail", not missing_audit,
                       f"{len(triggered)} of {len(audited)} domain tables have the audit trigger"
                       + (f"; missing: {', '.join(missing_audit)}" if missing_audit else "")))
        if conn.execute(text("SELECT to_regclass('audit_log')")).scalar() is None:
            checks.append(("audit log protection", False, "there is no audit_log table: run the migrations"))
            return checks
        writable = conn.execute(text(
            "SELECT has_table_privilege(current_user, 'audit_log', 'UPDATE') "
            "OR has_table_privilege(current_user, 'audit_log', 'DELETE')"
        )).scalar()
        owner = conn.execute(text(
            "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class WHERE oid = 'audit_log'::regclass"
        )).scalar()
        checks.append(("audit log protection", not writable or facts.privileged and allow,
                       "the connected role cannot update or delete audit rows" if not writable else
                       "the connected role may update or delete audit rows"
                       + (" (it owns the table: connect as the app role)" if owner else "")))
    return checks


@click.command("doctor", help="Check the database: version, role, migrations, RLS, audit trail.")
@with_appcontext
def doctor_command():
    try:
        checks = run_checks()
    except Exception as exc:  # a doctor reports, it does not crash
        click.echo(click.style("FAIL", fg="red") + f"  cannot check the database: {exc}")
        raise SystemExit(1) from exc
    url = db.engine.url.render_as_string(hide_password=True)
    click.echo(f"Database: {url}{' (embedded)' if current_app.config.get('DATABASE_IS_EMBEDDED') else ''}")
    for what, ok, detail in checks:
        mark = click.style(" ok ", fg="green") if ok else click.style("FAIL", fg="red")
        click.echo(f"{mark}  {what:<22} {detail}")
    if not all(ok for _, ok, _ in checks):
        raise SystemExit(1)
    click.echo("All checks passed.")
