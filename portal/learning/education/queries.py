"""Reads for the learning pages (students' side)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.accounts.models import User
from portal.db import db
from portal.learning.education.models import Enrollment, EnrollmentStatus


def student_dashboard(user: User) -> dict:
    """What the student dashboard shows of learning: the courses a student is in, latest first."""
    enrollments = db.session.scalars(
        select(Enrollment)
        .options(joinedload(Enrollment.course))
        .where(Enrollment.user_id == user.id, Enrollment.status != EnrollmentStatus.LEFT)
        .order_by(Enrollment.last_activity_at.desc().nulls_last(), Enrollment.created_at.desc())
        .limit(6)
    ).all()
    return {"enrollments": enrollments}
