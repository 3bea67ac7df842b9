"""Small builders for the course-authoring tests: courses with modules and lessons, staff rows."""

from __future__ import annotations

import uuid

from portal.accounts.models import User
from portal.db import db
from portal.learning.education.models import Course, CourseLevel, CourseStatus, Lesson, Module
from portal.learning.lms.models import CourseManagement, ManagementRole


def make_course(owner: User | None = None, *, modules: int = 0, lessons: int = 0,
                status: CourseStatus = CourseStatus.DRAFT, title: str | None = None) -> Course:
    """A course owned by ``owner`` with ``modules`` modules of ``lessons`` lessons each, committed
    (in tests a commit only releases a savepoint: a view that rolls back keeps these rows)."""
    suffix = uuid.uuid4().hex[:8]
    course = Course(slug=f"course-{suffix}", title=title or f"Course {suffix}", category="Testing",
                    level=CourseLevel.BEGINNER, status=status, instructor_id=owner.id if owner else None)
    db.session.add(course)
    db.session.flush()
    if owner is not None:
        add_member(course, owner, ManagementRole.OWNER)
    for m in range(1, modules + 1):
        module = Module(course_id=course.id, position=m, title=f"Module {m}")
        db.session.add(module)
        db.session.flush()
        for n in range(1, lessons + 1):
            db.session.add(Lesson(module_id=module.id, course_id=course.id, position=n, title=f"Lesson {m}.{n}",
                                  body=f"Text of lesson {m}.{n}"))
    db.session.commit()
    return course


def add_member(course: Course, user: User, role: ManagementRole) -> CourseManagement:
    membership = CourseManagement(course_id=course.id, user_id=user.id, role=role)
    db.session.add(membership)
    db.session.commit()
    return membership


def course_fields(**overrides) -> dict:
    """Valid fields for ``authoring.create_course`` / the new course form."""
    fields = {"title": "Introduction to Testing", "slug": "", "summary": "A short course.",
              "description": "# Welcome", "category": "Software", "level": "beginner", "estimated_hours": 4,
              "requires_all_lessons": True, "requires_quizzes_passed": True,
              "requires_assignments_submitted": False}
    fields.update(overrides)
    return fields


def form_data(fields: dict) -> dict:
    """Fields as a browser posts them: a ticked box sends "y", an unticked one nothing."""
    data = {}
    for name, value in fields.items():
        if value is True:
            data[name] = "y"
        elif value is not False and value is not None:
            data[name] = value
    return data
