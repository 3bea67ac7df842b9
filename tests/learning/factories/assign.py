"""Rows for the assignment, grading and gradebook tests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert

from portal.accounts.models import Role, User, UserStatus
from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
from portal.learning.education.models import Course, CourseLevel, CourseStatus, Enrollment, EnrollmentStatus
from portal.learning.lms.models import (
    Assignment,
    CourseManagement,
    Grade,
    ManagementRole,
    Submission,
    SubmissionStatus,
)
from tests.factories import create_user

RUBRIC = [
    {"title": "Argument", "levels": [{"title": "Strong", "points": "6"}, {"title": "Weak", "points": "2"}]},
    {"title": "Style", "levels": [{"title": "Clear", "points": "4"}, {"title": "Muddled", "points": "1"}]},
]


def make_course(owner: User | None = None, *, role: ManagementRole = ManagementRole.OWNER, **fields) -> Course:
    suffix = uuid.uuid4().hex[:8]
    course = Course(slug=fields.pop("slug", f"assign-course-{suffix}"), title=fields.pop("title", f"Course {suffix}"),
                    category="testing", level=CourseLevel.BEGINNER, status=CourseStatus.PUBLISHED, **fields)
    db.session.add(course)
    db.session.flush()
    if owner is not None:
        add_staff(course, owner, role)
    return course


def add_staff(course: Course, user: User, role: ManagementRole = ManagementRole.INSTRUCTOR) -> None:
    db.session.add(CourseManagement(course_id=course.id, user_id=user.id, role=role))
    db.session.flush()


def enroll(course: Course, student: User, status: EnrollmentStatus = EnrollmentStatus.ACTIVE) -> Enrollment:
    enrollment = Enrollment(course_id=course.id, user_id=student.id, status=status,
                            left_at=utcnow() if status == EnrollmentStatus.LEFT else None,
                            completed_at=utcnow() if status == EnrollmentStatus.COMPLETED else None)
    db.session.add(enrollment)
    db.session.flush()
    return enrollment


def make_assignment(course: Course, **fields) -> Assignment:
    values = {"title": "Essay " + uuid.uuid4().hex[:6], "points": Decimal(10), "published": True,
              "allow_text": True, "allow_files": True, "allowed_extensions": ["pdf", "txt"],
              "max_file_bytes": 1000, "rubric": [], "extensions": {}}
    values.update(fields)
    assignment = Assignment(course_id=course.id, **values)
    db.session.add(assignment)
    db.session.flush()
    return assignment


def make_submission(assignment: Assignment, student: User, *, text: str = "My answer", days_late: int = 0,
                    submitted_at: datetime | None = None, status=SubmissionStatus.SUBMITTED) -> Submission:
    submission = Submission(assignment_id=assignment.id, user_id=student.id, text_answer=text, status=status,
                            submitted_at=submitted_at or utcnow(), days_late=days_late)
    db.session.add(submission)
    db.session.flush()
    return submission


def release_grade(assignment: Assignment, student: User, score, grader: User | None = None) -> Grade:
    """A submission with a released grade of ``score``, straight into the tables."""
    submission = make_submission(assignment, student, status=SubmissionStatus.RELEASED)
    grade = Grade(submission_id=submission.id, assignment_id=assignment.id, user_id=student.id,
                  raw_score=Decimal(score), penalty=Decimal(0), score=Decimal(score), feedback="",
                  released_at=utcnow(), grader_id=grader.id if grader else None)
    db.session.add(grade)
    db.session.flush()
    return grade


def make_quiz(course: Course, **fields) -> Quiz:
    quiz = Quiz(course_id=course.id, title=fields.pop("title", "Quiz " + uuid.uuid4().hex[:6]),
                published=fields.pop("published", True), **fields)
    db.session.add(quiz)
    db.session.flush()
    return quiz


def graded_attempt(quiz: Quiz, student: User, percent, number: int = 1) -> QuizAttempt:
    percent = Decimal(percent)
    attempt = QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=number, status=AttemptStatus.GRADED,
                          started_at=utcnow() - timedelta(minutes=10), submitted_at=utcnow(),
                          score=percent / 10, max_score=Decimal(10), percent=percent, passed=percent >= 60)
    db.session.add(attempt)
    db.session.flush()
    return attempt


def bulk_course(owner: User, students: int, assignments: int, quizzes: int) -> Course:
    """A course with ``students`` enrolled, each with a released grade on every assignment and a
    graded attempt at every quiz: rows written with multi-row INSERTs for speed."""
    course = make_course(owner)
    now = utcnow()
    user_rows = [{"id": uuid.uuid4(), "email": f"bulk-{uuid.uuid4().hex[:12]}@tests.example",
                  "full_name": f"Student {i:04d}", "role": Role.STUDENT, "status": UserStatus.ACTIVE}
                 for i in range(students)]
    db.session.execute(insert(User), user_rows)
    db.session.execute(insert(Enrollment), [{"course_id": course.id, "user_id": row["id"],
                                             "status": EnrollmentStatus.ACTIVE} for row in user_rows])
    assignment_ids = [uuid.uuid4() for _ in range(assignments)]
    db.session.execute(insert(Assignment), [{"id": aid, "course_id": course.id, "title": f"Assignment {i}",
                                             "points": Decimal(10), "published": True, "rubric": [],
                                             "extensions": {}, "allowed_extensions": []}
                                            for i, aid in enumerate(assignment_ids)])
    quiz_ids = [uuid.uuid4() for _ in range(quizzes)]
    if quiz_ids:
        db.session.execute(insert(Quiz), [{"id": qid, "course_id": course.id, "title": f"Quiz {i}", "published": True}
                                          for i, qid in enumerate(quiz_ids)])
    submissions, grades, attempts = [], [], []
    for n, row in enumerate(user_rows):
        for i, aid in enumerate(assignment_ids):
            sid = uuid.uuid4()
            submissions.append({"id": sid, "assignment_id": aid, "user_id": row["id"], "text_answer": "x",
                                "status": SubmissionStatus.RELEASED, "submitted_at": now})
            score = Decimal((n + i) % 11)
            grades.append({"submission_id": sid, "assignment_id": aid, "user_id": row["id"], "raw_score": score,
                           "penalty": Decimal(0), "score": score, "feedback": "", "released_at": now})
        for qid in quiz_ids:
            attempts.append({"quiz_id": qid, "user_id": row["id"], "number": 1, "status": AttemptStatus.GRADED,
                             "started_at": now, "submitted_at": now, "score": Decimal(7), "max_score": Decimal(10),
                             "percent": Decimal(70), "passed": True})
    if submissions:
        db.session.execute(insert(Submission), submissions)
        db.session.execute(insert(Grade), grades)
    if attempts:
        db.session.execute(insert(QuizAttempt), attempts)
    db.session.flush()
    return course


__all__ = ["RUBRIC", "add_staff", "bulk_course", "create_user", "enroll", "graded_attempt", "make_assignment",
           "make_course", "make_quiz", "make_submission", "release_grade"]
