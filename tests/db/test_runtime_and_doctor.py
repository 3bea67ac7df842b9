"""The runtime's refusal to serve as a privileged role, ``flask doctor`` and
``flask db-roles create-app-role``."""

from __future__ import annotations

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import errors, sql
from sqlalchemy import create_engine, make_url, pool, text

from portal.config import PROJECT_ROOT, load_config
from portal.db import db
from portal.db.runtime import PrivilegedRoleRefused, RoleFacts, refuse_privileged_role, role_facts
from portal.db.urls import libpq_url, with_database, with_user
from tests.conftest import TEST_DB, _admin_url
from tests.db import admin_execute, other_app, separate_app

#: The newest migration.
HEAD = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()


def _engine(url: str):
    return create_engine(url, poolclass=pool.NullPool)


def _superuser_url() -> str:
    admin_url, _ = _admin_url()
    return with_database(admin_url, TEST_DB)


# ---------------------------------------------------------------- refusing privileged roles

def test_a_superuser_is_refused_with_a_fix():
    engine = _engine(_superuser_url())
    try:
        with pytest.raises(PrivilegedRoleRefused) as caught:
            refuse_privileged_role(engine, allow=False)
        message = str(caught.value)
        assert "is a superuser" in message
        assert "flask db-roles create-app-role" in message
        assert "DATABASE_URL" in message
        # allowed (development and tests): served, with the facts for the caller to report
        facts = refuse_privileged_role(engine, allow=True)
        assert facts.superuser is True and facts.privileged
    finally:
        engine.dispose()


def test_a_bypassrls_role_is_refused(database_urls):
    role = f"{TEST_DB}_bypass"
    admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    admin_execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER BYPASSRLS PASSWORD 'bypass-password-1'").format(
        sql.Identifier(role)))
    engine = _engine(with_user(database_urls[1], role, "bypass-password-1"))
    try:
        with pytest.raises(PrivilegedRoleRefused, match="a role with BYPASSRLS"):
            refuse_privileged_role(engine, allow=False)
    finally:
        engine.dispose()
        admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_app_role_is_served(database_urls):
    engine = _engine(database_urls[1])
    try:
        facts = refuse_privileged_role(engine, allow=False)
    finally:
        engine.dispose()
    assert facts.name == make_url(database_urls[1]).username
    assert facts.superuser is False
    assert facts.bypass_rls is False
    assert not facts.privileged


@pytest.mark.parametrize(("superuser", "bypass", "privileged"), [
    (False, False, False), (True, False, True), (False, True, True), (True, True, True),
])
def test_role_facts_privileged(superuser, bypass, privileged):
    assert RoleFacts("r", superuser, bypass, "18").privileged is privileged


@pytest.mark.parametrize(("env", "allowed"), [("development", True), ("test", True), ("production", False)])
def test_privileged_roles_are_allowed_only_in_development_and_tests(monkeypatch, env, allowed):
    monkeypatch.setenv("AZORA_ENV", env)
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv("DATABASE_URL", "postgresql://azora_app@db.invalid/azora")
    monkeypatch.delenv("ALLOW_PRIVILEGED_DB_ROLE", raising=False)
    assert load_config()["ALLOW_PRIVILEGED_DB_ROLE"] is allowed


def test_app_role_facts_through_the_running_app():
    with db.engine.connect() as conn:
        facts = role_facts(conn)
    assert (facts.superuser, facts.bypass_rls) == (False, False)
    assert facts.server_version


# ---------------------------------------------------------------- flask doctor

def test_doctor_passes_on_the_test_database(app, database_urls):
    result = app.test_cli_runner().invoke(args=["doctor"])
    out = result.output
    assert result.exit_code == 0, out
    assert "FAIL" not in out
    with db.engine.connect() as conn:
        version = conn.execute(text("SELECT current_setting('server_version')")).scalar()
        rls_count = conn.execute(text(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity"
        )).scalar()
    assert f"PostgreSQL {version}" in out
    assert f"{make_url(database_urls[1]).username}: superuser=no, bypassrls=no" in out
    assert f"database at {HEAD}; code at {HEAD}" in out
    assert f"{rls_count} tables with RLS forced" in out
    audited = len(set(db.metadata.tables) - {"audit_log", "rate_limits", "lesson_passages", "cache_entries",
                                                "api_logs", "events"})
    assert f"{audited} of {audited} domain tables have the audit trigger" in out
    assert "cannot update or delete audit rows" in out
    assert "All checks passed." in out


def test_doctor_fails_when_migrations_are_not_at_head():
    with separate_app(f"{TEST_DB}_nomig", migrate=False) as (application, _owner, _app), \
            application.app_context():
        result = application.test_cli_runner().invoke(args=["doctor"])
    out = result.output
    assert result.exit_code == 1, out
    assert f"database at nothing; code at {HEAD}" in out
    assert "cannot check the database" not in out  # it reports, it does not crash
    assert "All checks passed." not in out


def test_doctor_fails_when_connected_as_a_superuser(database_urls):
    owner_url, _ = database_urls
    with other_app(owner_url, _superuser_url(), ALLOW_PRIVILEGED_DB_ROLE=False) as application, \
            application.app_context():
        result = application.test_cli_runner().invoke(args=["doctor"])
    out = result.output
    assert result.exit_code == 1, out
    assert "superuser=yes" in out
    assert "the connected role may update or delete audit rows" in out
    assert "All checks passed." not in out


def test_doctor_notes_a_superuser_allowed_in_development(database_urls):
    owner_url, _ = database_urls
    with other_app(owner_url, _superuser_url(), ALLOW_PRIVILEGED_DB_ROLE=True) as application, \
            application.app_context():
        result = application.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 0, result.output
    assert "superuser=yes, bypassrls=yes (allowed in development)" in result.output


def test_doctor_fails_when_connected_as_the_owner(database_urls):
    """The owner is no superuser, but it holds write rights on the audit trail: the app must
    connect as the app role."""
    owner_url, _ = database_urls
    with other_app(owner_url, owner_url, ALLOW_PRIVILEGED_DB_ROLE=False) as application, \
            application.app_context():
        result = application.test_cli_runner().invoke(args=["doctor"])
    out = result.output
    assert result.exit_code == 1, out
    assert f"{make_url(owner_url).username}: superuser=no, bypassrls=no" in out
    assert "may update or delete audit rows (it owns the table: connect as the app role)" in out


# ---------------------------------------------------------------- flask db-roles create-app-role

def test_create_app_role_makes_an_unprivileged_role_with_row_access():
    role = f"{TEST_DB}_roles_made"
    database = f"{TEST_DB}_roles"
    admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    try:
        with separate_app(database) as (application, owner_url, _app), application.app_context():
            result = application.test_cli_runner().invoke(
                args=["db-roles", "create-app-role", "--name", role, "--password", "role-password-1"])
            assert result.exit_code == 0, result.output
            assert f"Role {role} is ready" in result.output

            with psycopg.connect(libpq_url(owner_url)) as conn:
                attrs = conn.execute(
                    "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication "
                    "FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                assert attrs == (True, False, False, False, False, False)
                owned = conn.execute(
                    "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)",
                    (role,)).fetchone()[0]
                assert owned == 0
                privileges = dict(conn.execute(
                    "SELECT p, has_table_privilege(%s, t, p) FROM unnest(%s::text[]) AS t, "
                    "unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p "
                    "WHERE t = 'users'", (role, ["users"])).fetchall())
                # SELECT only column by column: the password hash is not among them (migration 0008)
                assert privileges == {"SELECT": False, "INSERT": True, "UPDATE": True, "DELETE": True,
                                      "TRUNCATE": False}
                columns = dict(conn.execute(
                    "SELECT c, has_column_privilege(%s, 'users', c, 'SELECT') "
                    "FROM unnest(ARRAY['id', 'email', 'fullName', 'passwordHash']) AS c", (role,)).fetchall())
                assert columns == {"id": True, "email": True, "fullName": True, "passwordHash": False}
                audit = dict(conn.execute(
                    "SELECT p, has_table_privilege(%s, 'audit_log', p) "
                    "FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p",
                    (role,)).fetchall())
                assert audit == {"SELECT": True, "INSERT": False, "UPDATE": False, "DELETE": False,
                                 "TRUNCATE": False}
                may_create = conn.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (role,)).fetchone()[0]
                assert may_create is False

            # and it really works as the app role: reads rows, cannot touch the schema or the trail
            role_url = with_user(owner_url, role, "role-password-1")
            engine = _engine(role_url)
            try:
                assert refuse_privileged_role(engine, allow=False).name == role
            finally:
                engine.dispose()
            with psycopg.connect(libpq_url(role_url)) as conn:
                conn.execute("SELECT count(*) FROM users")
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute("CREATE TABLE not_allowed (id int)")
                conn.rollback()
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute("DELETE FROM audit_log WHERE false")
                conn.rollback()
    finally:
        admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))



@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL"])
def test_production_refuses_to_start_without_its_secrets(monkeypatch, missing):
    from portal.config import ConfigError

    monkeypatch.setenv("AZORA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-production-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://azora_app@db.invalid/azora")
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=missing):
        load_config()


# ---------------------------------------------------------------- provisioning

def test_workers_provisioning_one_database_at_once_all_succeed():
    """Every gunicorn worker builds the app, and so provisions the embedded database, at the
    same moment: the grants must not collide ("tuple concurrently updated")."""
    import threading

    from portal.db.provision import provision_database
    from tests.conftest import build_database, destroy_database

    name = f"{TEST_DB}_provision"
    urls = build_database(name)
    admin_url, _ = _admin_url()
    owner, app_role = (make_url(url).username for url in urls)
    passwords = [make_url(url).password for url in urls]
    errors_seen: list[BaseException] = []
    gate = threading.Barrier(6)

    def provision() -> None:
        gate.wait()
        try:
            provision_database(admin_url, name, owner, app_role, owner_password=passwords[0],
                               app_password=passwords[1])
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors_seen.append(exc)

    try:
        for _round in range(3):
            threads = [threading.Thread(target=provision) for _ in range(6)]
            gate.reset()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert errors_seen == []
        with psycopg.connect(libpq_url(urls[1])) as conn:  # the app role still connects and reads
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        destroy_database(name, urls)


def test_the_apps_connections_are_set_for_short_statements_on_data_in_memory(app):
    """The portal's statements are short: just-in-time compilation would only cost, and a random
    read costs about a sequential one (connection options, set with whatever other options a
    deployment gives)."""
    assert db.session.execute(text("SHOW jit")).scalar() == "off"
    assert db.session.execute(text("SHOW random_page_cost")).scalar() == "1.1"
    assert "-c jit=off" in app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["options"]
