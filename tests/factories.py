"""Factories for tests: real rows through the real models."""

from __future__ import annotations

import uuid

from portal.accounts.models import Faculty, Role, Student, User, UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.platform.notifications.models import Notification
from portal.security import passwords

PASSWORD = "correct horse battery staple"
_hash_cache: dict[str, str] = {}


def password_hash(password: str = PASSWORD) -> str:
    if password not in _hash_cache:
        _hash_cache[password] = passwords.hash_password(password)
    return _hash_cache[password]


def create_user(role: str = "student", *, email: str | None = None, full_name: str | None = None,
                status: UserStatus = UserStatus.ACTIVE, verified: bool = True, password: str | None = PASSWORD,
                **fields) -> User:
    role = Role(role)
    suffix = uuid.uuid4().hex[:10]
    user = User(
        email=(email or f"{role.value}-{suffix}@tests.example").lower(),
        full_name=full_name or f"Test {role.label} {suffix[:4]}",
        role=role,
        status=status,
        password_hash=password_hash(password) if password else None,
        email_verified_at=utcnow() if verified else None,
        password_changed_at=utcnow() if password else None,
        **fields,
    )
    if role == Role.STUDENT:
        user.student = Student(student_number=f"AZ-T{suffix[:8].upper()}")
    if role == Role.FACULTY:
        user.faculty = Faculty(department="Testing")
    db.session.add(user)
    db.session.flush()
    return user


def create_notification(user: User, title: str = "Hello", **fields) -> Notification:
    note = Notification(user_id=user.id, kind=fields.pop("kind", "test"), title=title, **fields)
    db.session.add(note)
    db.session.flush()
    return note
