"""The one declarative base, its conventions, and the Flask-SQLAlchemy extension.

Conventions:

- Tables are named explicitly, snake_case and plural, as the spec says.
- Columns are camelCase in the database and snake_case in Python. ``Base.__init_subclass__``
  names every ``mapped_column`` that was not given a name from its attribute, so nobody spells
  a column name twice.
- ``TimestampedModel`` adds a UUID primary key and ``createdAt`` / ``updatedAt``.
- Constraint names follow one naming convention, so migrations are stable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def camel(name: str) -> str:
    """``user_id`` -> ``userId``; names without underscores are kept."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)



db = SQLAlchemy(model_class=Base)


class Model(db.Model):
    """Abstract parent of every model: names columns in camelCase from their attributes."""

    __abstract__ = True
    #: Columns whose values never reach the audit trail (password hashes, tokens).
    __audit_secret_columns__: tuple[str, ...] = ()
    #: Whether the table has the audit trigger. Every domain table does.
    __audited__: bool = True

    def __init_subclass__(cls, **kwargs):
        # Runs before declarative scanning (in super()), so the names are in place when the
        # columns are copied into the table.
        for klass in cls.__mro__:
            for attr, value in list(vars(klass).items()):
                if isinstance(value, MappedColumn) and value.column.name is None:
                    value.column.name = camel(attr)
        super().__init_subclass__(**kwargs)


class TimestampedModel(Model):
    """UUID key plus creation and update times, set by the database and the ORM."""

    __abstract__ = True

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()"), sort_order=-10
    )
    # Python-side defaults (beside the server defaults for raw SQL): an INSERT then needs no
    # RETURNING, which row-level security would check against the SELECT policies.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now(), sort_order=10
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now(), onupdate=utcnow, sort_order=10
    )
