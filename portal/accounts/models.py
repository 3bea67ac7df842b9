"""Users and their profiles. A ``Student`` or ``Faculty`` row is a profile of one ``User``."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.errors import DomainError


class Role(enum.StrEnum):
    STUDENT = "student"
    FACULTY = "faculty"
    COMPLIANCE = "compliance"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        return {"compliance": "Compliance officer"}.get(self.value, self.value.capitalize())


STAFF_ROLES = (Role.FACULTY, Role.COMPLIANCE, Role.ADMIN)


class UserStatus(enum.StrEnum):
    INVITED = "invited"  #: staff account made by an admin; no password until the invite is accepted
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


#: Allowed status transitions, in one place. ``User.move_to`` refuses any other.
STATUS_TRANSITIONS: dict[UserStatus, frozenset[UserStatus]] = {
    UserStatus.INVITED: frozenset({UserStatus.ACTIVE, UserStatus.DEACTIVATED}),
    UserStatus.ACTIVE: frozenset({UserStatus.DEACTIVATED}),
    UserStatus.DEACTIVATED: frozenset({UserStatus.ACTIVE, UserStatus.INVITED}),
}


class InvalidTransition(DomainError):
    status_code = 409


class PasswordHash(TypeDecorator):
    """The type of ``users.passwordHash``, a column no role but the owner may SELECT (migration
    0008). Wherever a query selects it, the database is asked through the SECURITY DEFINER
    function ``user_password_hash(id)`` instead, which answers only a user's own hash, or any
    for the login and invitation steps and system actors; writes go to the column. Whether a
    password is set is ``user_has_password(id)`` (``portal.accounts.services.has_password``)."""

    impl = String(255)
    cache_ok = True

    def column_expression(self, column):
        table = getattr(column, "table", None)
        if table is None or "id" not in table.c:
            return column  # not selected from the table: let the privilege decide
        return func.user_password_hash(table.c.id, type_=String(255))


class User(TimestampedModel):
    __tablename__ = "users"
    __audit_secret_columns__ = ("passwordHash",)

    #: Stored lower-cased (the services normalise it), so uniqueness is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(120))
    #: argon2id hash; NULL while a staff invite is not accepted. Deferred (loaded on first use,
    #: through ``user_password_hash``): lists of users never carry it.
    password_hash: Mapped[str | None] = mapped_column(PasswordHash(), deferred=True)
    role: Mapped[Role] = mapped_column(string_enum(Role, "role"), index=True)
    status: Mapped[UserStatus] = mapped_column(string_enum(UserStatus, "status"), default=UserStatus.ACTIVE, index=True)
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When the password last changed: reset links issued before it stop working.
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # The profile rows go with the user (the foreign keys cascade in the database too).
    student: Mapped[Student | None] = relationship(back_populates="user", uselist=False,
                                                   cascade="all, delete-orphan", passive_deletes=True)
    faculty: Mapped[Faculty | None] = relationship(back_populates="user", uselist=False,
                                                   cascade="all, delete-orphan", passive_deletes=True)

    # Flask-Login protocol (kept here so the model needs no Flask import).
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.status == UserStatus.ACTIVE

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def first_name(self) -> str:
        return self.full_name.split(" ", 1)[0]

    def move_to(self, status: UserStatus) -> None:
        if status == self.status:
            return
        if status not in STATUS_TRANSITIONS[self.status]:
            raise InvalidTransition(f"An account that is {self.status.value} cannot become {status.value}.")
        self.status = status


# Keyset pagination of the admin list (createdAt DESC, id DESC). Declared after the class:
# inherited columns are not on the table while __table_args__ is read.
Index("ix_users_createdAt_id", User.created_at, User.id)


class Student(TimestampedModel):
    __tablename__ = "students"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    #: Human-friendly number shown on transcripts and certificates.
    student_number: Mapped[str] = mapped_column(String(20), unique=True)
    country: Mapped[str | None] = mapped_column(String(2))
    bio: Mapped[str | None] = mapped_column(String(500))

    user: Mapped[User] = relationship(back_populates="student")


class Faculty(TimestampedModel):
    __tablename__ = "faculty"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    department: Mapped[str | None] = mapped_column(String(120))
    title: Mapped[str | None] = mapped_column(String(80))

    user: Mapped[User] = relationship(back_populates="faculty")
