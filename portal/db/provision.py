"""Database roles and grants.

Two roles:

- the **owner** owns the database and every table and runs the migrations;
- the **app role** logs in for the running portal; it owns nothing, is not a superuser and
  has no BYPASSRLS, so row-level security applies to it. It may read and write rows, never
  change the schema, and may only read the audit trail.

``create_app_role`` is what ``flask db-roles create-app-role`` runs against an external server;
``provision_database`` is what the embedded server and the test suite use to build a database
from a superuser connection.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from portal.db.urls import libpq_url, with_database, with_user

#: Append-only tables and what the app role may not do to them: the audit trail is written
#: by its trigger alone; the ledger's transactions are inserted by the app but never changed.
APPEND_ONLY_TABLES = {"audit_log": "INSERT, UPDATE, DELETE, TRUNCATE", "transactions": "UPDATE, DELETE, TRUNCATE"}

#: Secret columns no role but the owner may SELECT: the app reads them only through a SECURITY
#: DEFINER function that checks who asks (``user_password_hash``, migration 0008).
HIDDEN_COLUMNS = {"users": ("passwordHash",)}


#: The advisory lock key that serialises ``provision_database`` on a server.
PROVISION_LOCK = 0x617A6F7261  # "azora"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def hidden_columns_sql(table: str, columns: tuple[str, ...]) -> str:
    """A DO block, run as the owner, that turns every other role's table-level SELECT on
    ``table`` into SELECT on each column except ``columns``. Idempotent; a no-op for a table
    that does not exist yet."""
    hidden = "ARRAY[" + ", ".join(_literal(c) for c in columns) + "]::text[]"
    return f"""
        DO $$
        DECLARE
            r record;
            v_table regclass := to_regclass({_literal(table)});
            v_visible text;
        BEGIN
            IF v_table IS NULL THEN RETURN; END IF;
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO v_visible
              FROM pg_attribute
             WHERE attrelid = v_table AND attnum > 0 AND NOT attisdropped AND attname <> ALL({hidden});
            FOR r IN SELECT grantee FROM information_schema.role_table_grants
                      WHERE table_schema = current_schema() AND table_name = {_literal(table)}
                        AND privilege_type = 'SELECT'
                     UNION
                     SELECT grantee FROM information_schema.column_privileges
                      WHERE table_schema = current_schema() AND table_name = {_literal(table)}
                        AND privilege_type = 'SELECT'
            LOOP
                CONTINUE WHEN r.grantee IN (current_user, 'PUBLIC')
                           OR r.grantee = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = v_table);
                EXECUTE format('REVOKE SELECT ON %s FROM %I', v_table, r.grantee);
                EXECUTE format('GRANT SELECT (%s) ON %s TO %I', v_visible, v_table, r.grantee);
            END LOOP;
        END $$
    """


def _role_exists(cur, role: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cur.fetchone() is not None


def ensure_login_role(cur, role: str, password: str | None = None, *, createrole: bool = False) -> None:
    """Create ``role`` as an unprivileged login role, or strip privileges it must not have."""
    options = sql.SQL("LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOREPLICATION {}").format(
        sql.SQL("CREATEROLE" if createrole else "NOCREATEROLE")
    )
    verb = "ALTER" if _role_exists(cur, role) else "CREATE"
    cur.execute(sql.SQL(verb + " ROLE {} {}").format(sql.Identifier(role), options))
    if password is not None:
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))


def grant_app_privileges(cur, app_role: str, owner: str | None = None) -> None:
    """Grant the app role row access to every table, now and for tables created later.

    Run as the owner. Default privileges make tables from future migrations usable without
    another grant; the append-only tables are then taken back to read-only, and the secret
    columns (``HIDDEN_COLUMNS``) back to unreadable.
    """
    role = sql.Identifier(app_role)
    database = sql.Identifier(cur.connection.info.dbname)
    cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
    # No temporary tables or functions: a temporary table shadows the table of that name for the
    # rest of the connection's life, so an injected statement could plant one on a pooled
    # connection and catch or feed the rows of the next requests served on it (migration 0008).
    cur.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC, {}").format(database, role))
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
    cur.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(role))
    cur.execute(sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
    cur.execute(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}").format(role))
    for_role = sql.SQL("FOR ROLE {} ").format(sql.Identifier(owner)) if owner else sql.SQL("")
    cur.execute(sql.SQL(
        "ALTER DEFAULT PRIVILEGES {}IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
    ).format(for_role, role))
    cur.execute(sql.SQL(
        "ALTER DEFAULT PRIVILEGES {}IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
    ).format(for_role, role))
    for table, privileges in APPEND_ONLY_TABLES.items():
        cur.execute("SELECT to_regclass(%s)", (f"public.{table}",))
        if cur.fetchone()[0] is not None:
            cur.execute(sql.SQL("REVOKE {} ON {} FROM {}").format(sql.SQL(privileges), sql.Identifier(table), role))
    for table, columns in HIDDEN_COLUMNS.items():
        cur.execute(hidden_columns_sql(table, columns))


def create_app_role(owner_url: str, app_role: str, password: str | None) -> None:
    """Create (or repair) the app role and grant it what it needs, connected as the owner.

    The owner needs CREATEROLE for this (README: using an external PostgreSQL).
    """
    with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn, conn.cursor() as cur:
        ensure_login_role(cur, app_role, password)
        cur.execute("SELECT current_user")
        owner = cur.fetchone()[0]
        grant_app_privileges(cur, app_role, owner)


def provision_database(
    admin_url: str,
    database: str,
    owner: str,
    app_role: str,
    *,
    owner_password: str | None = None,
    app_password: str | None = None,
    fresh: bool = False,
) -> tuple[str, str]:
    """From a superuser connection: both roles and a database owned by the owner.

    Returns ``(owner_url, app_url)``. ``fresh`` drops the database first (the test suite
    builds its database anew each run).
    """
    admin_in_db = with_database(admin_url, database)
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn, conn.cursor() as cur:
        # One provisioning at a time on this server: the workers of ``gunicorn -w 4`` each build
        # the app at once, and concurrent GRANTs on the same objects fail with "tuple
        # concurrently updated". The lock ends with this connection, after the grants below.
        cur.execute("SELECT pg_advisory_lock(%s)", (PROVISION_LOCK,))
        ensure_login_role(cur, owner, owner_password, createrole=True)
        ensure_login_role(cur, app_role, app_password)
        if fresh:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)))
        with psycopg.connect(libpq_url(admin_in_db), autocommit=True) as db_conn, db_conn.cursor() as db_cur:
            # Grants are made as the owner, so default privileges apply to the owner's tables.
            db_cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
            grant_app_privileges(db_cur, app_role, owner)
    return (with_user(admin_in_db, owner, owner_password), with_user(admin_in_db, app_role, app_password))
