"""Rows for the certificate tests: courses, staff on them, issued certificates."""

from __future__ import annotations

import uuid

from portal import events
from portal.db import db
from portal.learning.education.models import Course, CourseLevel, CourseStatus
from portal.learning.lms.models import Certificate, CourseManagement, ManagementRole


def create_course(title: str | None = None, **fields) -> Course:
    suffix = uuid.uuid4().hex[:8]
    course = Course(slug=fields.pop("slug", f"cert-course-{suffix}"), title=title or f"Certified Course {suffix}",
                    category=fields.pop("category", "Testing"), level=fields.pop("level", CourseLevel.BEGINNER),
                    status=fields.pop("status", CourseStatus.PUBLISHED), **fields)
    db.session.add(course)
    db.session.flush()
    return course


def add_staff(course: Course, user, role: ManagementRole = ManagementRole.OWNER) -> CourseManagement:
    row = CourseManagement(course_id=course.id, user_id=user.id, role=role)
    db.session.add(row)
    db.session.flush()
    return row


def complete(user, course: Course) -> Certificate:
    """Complete the course the way the learning area announces it, and return the certificate."""
    events.course_completed.send(user=user, course=course)
    return db.session.query(Certificate).filter_by(user_id=user.id, course_id=course.id).one()
