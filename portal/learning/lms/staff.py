"""A course's staff: owners add co-instructors and assistants, change their role, remove them.

Only owners (and administrators) manage staff (``access.CAN_MANAGE_STAFF``). A course always
keeps at least one owner: the last one can be neither demoted nor removed. Each change locks
the course row first, so two owners demoting each other at the same moment cannot leave the
course with none.

The course's ``instructor_id`` (the name the catalog shows) follows: when that person stops
being an owner, the longest-serving remaining owner takes their place.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from portal.accounts.models import Role, User, UserStatus
from portal.db import db
from portal.errors import Conflict, DomainError, NotFound
from portal.learning.education.models import Course
from portal.learning.lms import access
from portal.learning.lms.models import CourseManagement, ManagementRole
from portal.platform.notifications.services import notify


class InvalidInput(DomainError):
    status_code = 422


#: Roles an owner may give when adding someone; ownership is shared by changing a role later.
ADDABLE_ROLES = (ManagementRole.INSTRUCTOR, ManagementRole.ASSISTANT)

ROLE_LABELS = {
    ManagementRole.OWNER: "Owner",
    ManagementRole.INSTRUCTOR: "Co-instructor",
    ManagementRole.ASSISTANT: "Assistant",
}

_ROLE_ORDER = {ManagementRole.OWNER: 0, ManagementRole.INSTRUCTOR: 1, ManagementRole.ASSISTANT: 2}


def _course_for_staff(actor: User, course_id: uuid.UUID) -> Course:
    course = db.session.scalar(
        select(Course).where(Course.id == course_id).with_for_update().execution_options(populate_existing=True)
    )
    if course is None:
        raise NotFound("That course does not exist.")
    access.require(actor, course.id, access.CAN_MANAGE_STAFF, "manage this course's staff")
    return course


def _role(value, allowed) -> ManagementRole:
    try:
        role = ManagementRole(value)
    except ValueError:
        role = None
    if role not in allowed:
        raise InvalidInput("Choose a role: " + ", ".join(ROLE_LABELS[r].lower() for r in allowed) + ".",
                           field="role")
    return role


def _membership(course: Course, management_id: uuid.UUID) -> CourseManagement:
    membership = db.session.get(CourseManagement, management_id)
    if membership is None or membership.course_id != course.id:
        raise NotFound("That person is not on this course's staff.")
    return membership


def _owner_count(course: Course) -> int:
    return db.session.scalar(
        select(func.count()).select_from(CourseManagement)
        .where(CourseManagement.course_id == course.id, CourseManagement.role == ManagementRole.OWNER)
    )


def _keep_instructor(course: Course, leaving_user_id: uuid.UUID) -> None:
    """When the catalog's instructor stops being an owner, the longest-serving other owner
    takes their place."""
    if course.instructor_id != leaving_user_id:
        return
    course.instructor_id = db.session.scalar(
        select(CourseManagement.user_id)
        .where(CourseManagement.course_id == course.id, CourseManagement.role == ManagementRole.OWNER,
               CourseManagement.user_id != leaving_user_id)
        .order_by(CourseManagement.created_at, CourseManagement.id).limit(1)
    )


def list_staff(course_id: uuid.UUID) -> list[tuple[CourseManagement, User]]:
    """The staff, owners first, then co-instructors, then assistants, each by name; one query.
    (A course's staff is a handful of people, so it is not paginated.)"""
    rows = db.session.execute(
        select(CourseManagement, User).join(User, User.id == CourseManagement.user_id)
        .where(CourseManagement.course_id == course_id)
    ).all()
    return sorted(((m, u) for m, u in rows), key=lambda row: (_ROLE_ORDER[row[0].role], row[1].full_name.lower()))


def add_staff(actor: User, course_id: uuid.UUID, email: str, role: ManagementRole | str) -> CourseManagement:
    """Add the faculty member with ``email`` as a co-instructor or an assistant."""
    course = _course_for_staff(actor, course_id)
    role = _role(role, ADDABLE_ROLES)
    email = (email or "").replace("\x00", "").strip().lower()
    if not email:
        raise InvalidInput("Enter the e-mail address of a faculty member.", field="email")
    if len(email) > 254:
        raise InvalidInput("Enter a valid e-mail address.", field="email")
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None or user.role != Role.FACULTY:
        raise InvalidInput(f"No faculty member has the address {email}. Only faculty accounts can join a "
                           "course's staff.", field="email")
    if user.status != UserStatus.ACTIVE:
        raise InvalidInput(f"{user.full_name}'s account is not active, so they cannot join the staff yet.",
                           field="email")
    existing = db.session.scalar(select(CourseManagement).where(CourseManagement.course_id == course.id,
                                                                CourseManagement.user_id == user.id))
    if existing is not None:
        raise Conflict(f"{user.full_name} is already on the staff ({ROLE_LABELS[existing.role].lower()}).",
                       field="email")
    membership = CourseManagement(course_id=course.id, user_id=user.id, role=role)
    db.session.add(membership)
    db.session.flush()
    notify(user.id, "course_staff", f"You are now {ROLE_LABELS[role].lower()} of {course.title}"[:200],
           f"{actor.full_name} added you to the staff of the course \"{course.title}\".",
           f"/learning/manage/{course.id}")
    return membership


def change_role(actor: User, course_id: uuid.UUID, management_id: uuid.UUID,
                role: ManagementRole | str) -> CourseManagement:
    """Give a staff member another role (owner, co-instructor or assistant); never leaves the
    course without an owner."""
    course = _course_for_staff(actor, course_id)
    role = _role(role, tuple(ManagementRole))
    membership = _membership(course, management_id)
    if membership.role == role:
        return membership
    if membership.role == ManagementRole.OWNER:
        if _owner_count(course) <= 1:
            raise Conflict("A course needs at least one owner. Make someone else an owner first.")
        _keep_instructor(course, membership.user_id)
    membership.role = role
    if role == ManagementRole.OWNER and course.instructor_id is None:
        course.instructor_id = membership.user_id
    db.session.flush()
    return membership


def remove_staff(actor: User, course_id: uuid.UUID, management_id: uuid.UUID) -> CourseManagement:
    """Take someone off the staff; never the last owner."""
    course = _course_for_staff(actor, course_id)
    membership = _membership(course, management_id)
    if membership.role == ManagementRole.OWNER:
        if _owner_count(course) <= 1:
            raise Conflict("The last owner cannot be removed. Make someone else an owner first.")
        _keep_instructor(course, membership.user_id)
    db.session.delete(membership)
    db.session.flush()
    return membership
