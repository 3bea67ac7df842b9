"""Database URL helpers shared by the runtime, the migrations and the tests."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def sqlalchemy_url(url: str) -> str:
    """Normalise ``postgres://`` / ``postgresql://`` URLs to the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL as plain libpq understands it (for psycopg.connect and procrastinate)."""
    parsed = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return make_url(sqlalchemy_url(url)).set(database=database).render_as_string(hide_password=False)


def with_user(url: str, username: str, password: str | None = None) -> str:
    return (
        make_url(sqlalchemy_url(url))
        .set(username=username, password=password)
        .render_as_string(hide_password=False)
    )
