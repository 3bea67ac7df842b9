"""Reads for the learning pages (faculty side)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import defer

from portal.accounts.models import Role, User
from portal.db import db
from portal.learning.education.models import (
    Course,
    CourseStatus,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Module,
)
from portal.learning.lms.models import CourseManagement, ManagementRole
from portal.pagination import Page, decode_cursor, encode_cursor

#: How many courses the dashboard card lists before "All my courses".
DASHBOARD_COURSES = 6


@dataclass
class ManagedCourse:
    """A row of "My courses": the course, the viewer's role on it (None for an administrator
    off its staff) and its size."""

    course: Course
    role: ManagementRole | None
    modules: int
    lessons: int
    students: int


def _counts():
    modules = (select(func.count()).select_from(Module).where(Module.course_id == Course.id)
               .correlate(Course).scalar_subquery())
    lessons = (select(func.count()).select_from(Lesson).where(Lesson.course_id == Course.id)
               .correlate(Course).scalar_subquery())
    students = (select(func.count()).select_from(Enrollment)
                .where(Enrollment.course_id == Course.id, Enrollment.status != EnrollmentStatus.LEFT)
                .correlate(Course).scalar_subquery())
    return modules, lessons, students


def _managed_stmt(user: User):
    modules, lessons, students = _counts()
    if user.role == Role.ADMIN:
        role = (select(CourseManagement.role)
                .where(CourseManagement.course_id == Course.id, CourseManagement.user_id == user.id)
                .correlate(Course).scalar_subquery())
        return select(Course, role, modules, lessons, students).options(defer(Course.description))
    return (select(Course, CourseManagement.role, modules, lessons, students)
            .options(defer(Course.description))
            .join(CourseManagement, CourseManagement.course_id == Course.id)
            .where(CourseManagement.user_id == user.id))


def managed_courses(user: User, *, status: str = "", cursor: str | None = None, size: int = 20) -> Page:
    """The courses ``user`` is on the staff of (every course for an administrator), most
    recently changed first, as ``ManagedCourse`` rows; keyset pagination, one query."""
    stmt = _managed_stmt(user)
    if status in CourseStatus._value2member_map_:
        stmt = stmt.where(Course.status == CourseStatus(status))
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(Course.updated_at, Course.id) < tuple_(*position))
    rows = db.session.execute(stmt.order_by(Course.updated_at.desc(), Course.id.desc()).limit(size + 1)).all()
    items = [ManagedCourse(*row) for row in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        last = items[-1].course
        next_cursor = encode_cursor(last.updated_at, last.id)
    return Page(items, next_cursor)


def faculty_dashboard(user: User) -> dict:
    """What the faculty dashboard shows of learning: the courses they are on the staff of
    (``managed_courses``: (course, role) pairs, the most recently changed first, at most
    ``DASHBOARD_COURSES``), their sizes (``course_stats``: course id to ``ManagedCourse``) and
    whether there are more (``more_courses``)."""
    page = managed_courses(user, size=DASHBOARD_COURSES) if user.role == Role.FACULTY else Page([], None)
    return {
        "managed_courses": [(item.course, item.role) for item in page.items],
        "course_stats": {item.course.id: item for item in page.items},
        "more_courses": page.has_next,
    }


@dataclass
class OutlineModule:
    module: Module
    lessons: list[Lesson] = field(default_factory=list)


def outline(course_id: uuid.UUID) -> list[OutlineModule]:
    """The course's modules in order, each with its lessons in order (without their text): two
    queries whatever the size of the course."""
    modules = db.session.scalars(
        select(Module).where(Module.course_id == course_id).order_by(Module.position)
    ).all()
    result = {module.id: OutlineModule(module) for module in modules}
    lessons = db.session.scalars(
        select(Lesson).options(defer(Lesson.body)).where(Lesson.course_id == course_id)
        .order_by(Lesson.module_id, Lesson.position)
    )
    for lesson in lessons:
        if lesson.module_id in result:
            result[lesson.module_id].lessons.append(lesson)
    return list(result.values())


def categories(limit: int = 100) -> list[str]:
    """Categories already in use, for the course form's suggestions."""
    return list(db.session.scalars(
        select(Course.category).group_by(Course.category).order_by(func.count().desc(), Course.category)
        .limit(limit)
    ))


def to_grade(user: User, limit: int = 50) -> dict:
    """What waits for a grade in the courses ``user`` grades (every course for an admin):
    assignments with ungraded submissions, and quizzes with essays to grade. Two statements."""
    from sqlalchemy import and_, func

    from portal.accounts.models import Role
    from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
    from portal.learning.lms import access
    from portal.learning.lms.models import Assignment, Submission, SubmissionStatus

    graded = select(CourseManagement.course_id).where(CourseManagement.user_id == user.id,
                                                      CourseManagement.role.in_(access.CAN_GRADE))
    assignments = (
        select(Assignment.id, Assignment.title, Course.title.label("course_title"), Assignment.due_at,
               func.count(Submission.id).label("waiting"))
        .join(Course, Course.id == Assignment.course_id)
        .join(Submission, and_(Submission.assignment_id == Assignment.id,
                               Submission.status == SubmissionStatus.SUBMITTED))
        .group_by(Assignment.id, Course.title)
        .order_by(Assignment.due_at.asc().nulls_last(), Assignment.title).limit(limit)
    )
    quizzes = (
        select(Quiz.id, Quiz.title, Course.title.label("course_title"), func.count(QuizAttempt.id).label("waiting"))
        .join(Course, Course.id == Quiz.course_id)
        .join(QuizAttempt, and_(QuizAttempt.quiz_id == Quiz.id, QuizAttempt.status == AttemptStatus.SUBMITTED))
        .group_by(Quiz.id, Course.title)
        .order_by(Quiz.title).limit(limit)
    )
    if user.role != Role.ADMIN:
        assignments = assignments.where(Assignment.course_id.in_(graded))
        quizzes = quizzes.where(Quiz.course_id.in_(graded))
    return {"rows": db.session.execute(assignments).all(), "quiz_rows": db.session.execute(quizzes).all()}
