"""Which database the app uses, and whether it may serve as the role it connects with."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from portal.db.urls import sqlalchemy_url


@dataclass(frozen=True)
class DatabaseUrls:
    app: str
    owner: str
    embedded: bool


def resolve_urls(config: dict) -> DatabaseUrls:
    """``DATABASE_URL`` when set; otherwise start (or reuse) the embedded server."""
    if config.get("DATABASE_URL"):
        app_url = sqlalchemy_url(config["DATABASE_URL"])
        owner_url = sqlalchemy_url(config.get("MIGRATION_DATABASE_URL") or app_url)
        return DatabaseUrls(app=app_url, owner=owner_url, embedded=False)
    from portal.db import embedded

    found = embedded.ensure(config.get("EMBEDDED_DATABASE_NAME", "azora"))
    return DatabaseUrls(app=sqlalchemy_url(found.app_url), owner=sqlalchemy_url(found.owner_url), embedded=True)


@dataclass(frozen=True)
class RoleFacts:
    name: str
    superuser: bool
    bypass_rls: bool
    server_version: str

    @property
    def privileged(self) -> bool:
        return self.superuser or self.bypass_rls


def role_facts(connection) -> RoleFacts:
    row = connection.execute(
        text(
            "SELECT current_user, r.rolsuper, r.rolbypassrls, current_setting('server_version') "
            "FROM pg_roles r WHERE r.rolname = current_user"
        )
    ).one()
    return RoleFacts(row[0], row[1], row[2], row[3])


class PrivilegedRoleRefused(RuntimeError):
    pass


def refuse_privileged_role(engine, allow: bool) -> RoleFacts:
    """Raise with a fix when the app would serve as a superuser or BYPASSRLS role."""
    with engine.connect() as conn:
        facts = role_facts(conn)
    if facts.privileged and not allow:
        what = "a superuser" if facts.superuser else "a role with BYPASSRLS"
        raise PrivilegedRoleRefused(
            f"Refusing to serve: the database role {facts.name!r} is {what}, so row-level security "
            "would not protect anyone's data.\n"
            "Fix: create the app role with `flask db-roles create-app-role` (run with "
            "MIGRATION_DATABASE_URL set to the owner's URL), then set DATABASE_URL to connect as "
            "that role. See the README, 'Using an external PostgreSQL'."
        )
    return facts
