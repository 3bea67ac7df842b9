"""Helpers that migrations call, so every domain table gets the same protections.

Usage inside an Alembic migration::

    from portal.db.migration_helpers import audit_table, enable_rls

    audit_table("notifications")
    enable_rls("notifications", own_rows(), roles_may("system"), anyone_may_insert())
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import op

from portal.db.audit import AUDIT_FUNCTIONS_SQL, AUDIT_LOG_GUARD_SQL
from portal.db.provision import hidden_columns_sql

#: SQL expressions for the transaction-local identity (portal.db.context).
CURRENT_USER_ID = "nullif(current_setting('app.user_id', true), '')::uuid"
CURRENT_ROLE = "current_setting('app.role', true)"


def install_audit_functions() -> None:
    """Create the trigger functions and protect ``audit_log`` (first migration only)."""
    op.execute(AUDIT_FUNCTIONS_SQL)
    op.execute(AUDIT_LOG_GUARD_SQL)


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def audit_table(table: str, secret_columns: tuple[str, ...] = ()) -> None:
    """Install the audit trigger on ``table``; ``secret_columns`` never reach the trail."""
    args = ", ".join(_quote_literal(c) for c in secret_columns)
    op.execute(f'DROP TRIGGER IF EXISTS audit_row_change ON "{table}"')
    op.execute(
        f'CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
        f"FOR EACH ROW EXECUTE FUNCTION audit_row_change({args})"
    )


def drop_audit(table: str) -> None:
    op.execute(f'DROP TRIGGER IF EXISTS audit_row_change ON "{table}"')


@dataclass(frozen=True)
class Policy:
    """A permissive policy: ``using`` filters the rows a command reaches; ``check`` guards the
    rows it writes (defaults to ``using``)."""

    name: str
    using: str | None
    check: str | None = None
    command: str = "ALL"  # ALL, SELECT, INSERT, UPDATE, DELETE


def own_rows(column: str = '"userId"') -> Policy:
    """A user reaches the rows whose ``column`` is their id."""
    return Policy("own_rows", f"{column} = {CURRENT_USER_ID}")


def roles_may(*roles: str, name: str | None = None) -> Policy:
    """The listed roles (``system`` for jobs and commands) reach every row."""
    listed = ", ".join(_quote_literal(r) for r in roles)
    return Policy(name or "roles_" + "_".join(roles), f"{CURRENT_ROLE} IN ({listed})")


def identified() -> Policy:
    """Any identified actor (a user, ``anonymous`` web request or ``system`` actor) reaches every
    row; a connection that set no identity reaches none."""
    return Policy("identified", f"coalesce({CURRENT_ROLE}, '') <> ''")


def anyone_may_insert() -> Policy:
    """Any identified actor may add rows (e.g. a notification for another user); reading them
    back is still limited by the other policies."""
    return Policy("anyone_inserts", None, "true", "INSERT")


def enable_rls(table: str, *policies: Policy) -> None:
    """ENABLE and FORCE row-level security on ``table`` with permissive ``policies``.

    FORCE makes the table owner subject to the policies too, so only a superuser or a
    BYPASSRLS role sees past them, and the app refuses to serve as either.
    """
    op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
    op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
    for policy in policies:
        op.execute(f'DROP POLICY IF EXISTS {policy.name} ON "{table}"')
        clauses = [f"CREATE POLICY {policy.name} ON \"{table}\" FOR {policy.command}"]
        if policy.using is not None:
            clauses.append(f"USING ({policy.using})")
        check = policy.check if policy.check is not None else (policy.using if policy.command != "SELECT" and
                                                               policy.command != "DELETE" else None)
        if check is not None:
            clauses.append(f"WITH CHECK ({check})")
        op.execute(" ".join(clauses))


def disable_rls(table: str, *policy_names: str) -> None:
    for name in policy_names:
        op.execute(f'DROP POLICY IF EXISTS {name} ON "{table}"')
    op.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
    op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')


def hide_columns(table: str, *columns: str) -> None:
    """Take SELECT on ``columns`` of ``table`` away from every role but the owner: the other
    columns stay readable, writes are unchanged. A role then reads the hidden columns only
    through a SECURITY DEFINER function that decides who may. Call it again after adding a
    column to ``table`` (a column-level grant does not cover columns added later).
    ``portal.db.provision`` applies the same to the app role when it grants table access anew."""
    op.execute(hidden_columns_sql(table, columns))


def show_columns(table: str) -> None:
    """Undo ``hide_columns``: table-level SELECT again for every role that had column grants."""
    op.execute(f"""
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT DISTINCT grantee FROM information_schema.column_privileges
                     WHERE table_schema = current_schema() AND table_name = {_quote_literal(table)}
                       AND privilege_type = 'SELECT' AND grantee NOT IN (current_user, 'PUBLIC')
            LOOP
                EXECUTE format('GRANT SELECT ON %I TO %I', {_quote_literal(table)}, r.grantee);
            END LOOP;
        END $$
    """)


def enum_check(table: str, name: str, column: str, values: tuple[str, ...]) -> None:
    """Replace the CHECK ``name`` of a ``string_enum`` column with one listing ``values`` (all of
    them: a migration that adds a value passes the earlier ones too, and its downgrade the old
    list)."""
    listed = ", ".join(_quote_literal(v) for v in values)
    op.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS {name}')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT {name} CHECK ("{column}" IN ({listed}))')
