"""Reads for the learning pages (faculty side)."""

from __future__ import annotations

from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.learning.education.models import Course
from portal.learning.lms.models import CourseManagement


def faculty_dashboard(user: User) -> dict:
    """What the faculty dashboard shows of learning: the courses they are on the staff of."""
    rows = db.session.execute(
        select(Course, CourseManagement.role)
        .join(CourseManagement, CourseManagement.course_id == Course.id)
        .where(CourseManagement.user_id == user.id)
        .order_by(Course.title)
    ).all()
    return {"managed_courses": [(course, role) for course, role in rows]}
