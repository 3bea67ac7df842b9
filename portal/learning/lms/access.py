"""Who may do what with a course: the data-level checks every learning service makes.

Permissions (portal.security.permissions) say what a role may do at all; these say whether
this user may do it to this course. Admins manage every course; faculty the courses they hold a
``course_managements`` row for, with what their management role allows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from portal.accounts.models import Role, User
from portal.db import REQUEST_CACHE, db, request_cache
from portal.errors import Forbidden
from portal.learning.lms.models import CourseManagement, ManagementRole

#: What each management role may do.
CAN_EDIT = frozenset({ManagementRole.OWNER, ManagementRole.INSTRUCTOR})  #: content, settings, publishing
CAN_GRADE = frozenset({ManagementRole.OWNER, ManagementRole.INSTRUCTOR, ManagementRole.ASSISTANT})
CAN_RELEASE = frozenset({ManagementRole.OWNER, ManagementRole.INSTRUCTOR})  #: release grades
CAN_MANAGE_STAFF = frozenset({ManagementRole.OWNER})  #: add and remove co-instructors


def management_role(user: User, course_id: uuid.UUID) -> ManagementRole | None:
    """The user's role on the course's staff, or None. Asked several times in one request
    (the page's own check, its tabs, its links), so it is remembered in the request cache; a
    change to any staff row forgets it (``_forget_roles``)."""
    cache = request_cache()
    key = ("course_management_role", user.id, course_id)
    if key not in cache:
        cache[key] = db.session.scalar(
            select(CourseManagement.role).where(CourseManagement.course_id == course_id,
                                                CourseManagement.user_id == user.id)
        )
    return cache[key]


def remember_management_role(user: User, course_id: uuid.UUID, role: ManagementRole | None) -> None:
    """Record the user's role on the course's staff, read by a page along with its other rows
    (``CourseManagement.role`` outer-joined on the user), so that ``may`` and ``require`` ask
    the database nothing more in this request."""
    request_cache()[("course_management_role", user.id, course_id)] = role


@event.listens_for(Session, "after_flush")
def _forget_roles(session: Session, _context) -> None:
    if any(isinstance(row, CourseManagement) for row in (*session.new, *session.dirty, *session.deleted)):
        session.info.pop(REQUEST_CACHE, None)


def may(user: User, course_id: uuid.UUID, allowed: frozenset[ManagementRole]) -> bool:
    if user.role == Role.ADMIN:
        return True
    if user.role != Role.FACULTY:
        return False
    return management_role(user, course_id) in allowed


def require(user: User, course_id: uuid.UUID, allowed: frozenset[ManagementRole], what: str) -> None:
    """Raise Forbidden unless ``user`` may do ``what`` (e.g. "edit this course") to the course."""
    if not may(user, course_id, allowed):
        raise Forbidden(f"You cannot {what}: you are not on this course's staff with that right.")


def managed_course_ids(user: User) -> list[uuid.UUID]:
    """The courses a faculty member is on the staff of (all of them for an admin is not listed
    here: callers treat admins separately)."""
    return list(db.session.scalars(select(CourseManagement.course_id).where(CourseManagement.user_id == user.id)))
