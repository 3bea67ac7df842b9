"""``flask seed-demo`` loads the demo courses with students at varied progress."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal import demo
from portal.db import db
from portal.learning import demo_content
from portal.learning.assessment.models import Quiz, QuizQuestion
from portal.learning.education.models import Course, CourseStatus, Enrollment, Lesson, Progress
from portal.learning.lms.models import Assignment, CourseManagement, ManagementRole, Submission


@pytest.fixture(autouse=True)
def demo_logins_file(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "CREDENTIALS_FILE", tmp_path / "demo-logins.txt")


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _seed(app):
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output


def test_the_demo_courses_are_published_with_their_content(app):
    _seed(app)
    slugs = [spec.slug for spec in demo_content.COURSES]
    courses = db.session.scalars(select(Course).where(Course.slug.in_(slugs))).all()
    assert sorted(c.slug for c in courses) == sorted(slugs)
    faculty = demo.ACCOUNTS[1][0]
    for course in courses:
        spec = demo_content.course_by_slug(course.slug)
        assert course.status == CourseStatus.PUBLISHED and course.published_at is not None
        assert _count(Lesson, Lesson.course_id == course.id) == sum(len(m.lessons) for m in spec.modules)
        owner = db.session.execute(select(CourseManagement).where(CourseManagement.course_id == course.id)).scalar_one()
        assert owner.role == ManagementRole.OWNER and owner.user_id == course.instructor_id
        quizzes = db.session.scalars(select(Quiz).where(Quiz.course_id == course.id)).all()
        assert len(quizzes) == len(spec.quizzes) and all(q.published for q in quizzes)
        assert _count(QuizQuestion, QuizQuestion.quiz_id.in_([q.id for q in quizzes])) == sum(
            len(q.questions) for q in spec.quizzes)
        assignment = db.session.scalars(select(Assignment).where(Assignment.course_id == course.id)).one()
        best = sum(max(level["points"] for level in criterion["levels"]) for criterion in assignment.rubric)
        assert Decimal(best) == assignment.points
    from portal.accounts.models import User

    teacher = db.session.scalar(select(User).where(User.email == faculty))
    assert {c.instructor_id for c in courses} == {teacher.id}


def test_students_are_at_varied_progress_with_work_to_grade(app):
    _seed(app)
    percents = set(db.session.scalars(select(Enrollment.progress_percent)))
    assert len(percents) >= 4 and 0 in percents
    assert _count(Submission) >= 3
    # progress rows agree with the enrolments' percentages
    for enrollment in db.session.scalars(select(Enrollment)):
        lessons = _count(Lesson, Lesson.course_id == enrollment.course_id)
        done = _count(Progress, Progress.user_id == enrollment.user_id, Progress.course_id == enrollment.course_id,
                      Progress.completed_at.is_not(None))
        assert enrollment.progress_percent == round(100 * done / lessons)


def test_seeding_twice_adds_no_course(app):
    _seed(app)
    counts = (_count(Course), _count(Lesson), _count(Enrollment), _count(Submission))
    _seed(app)
    assert (_count(Course), _count(Lesson), _count(Enrollment), _count(Submission)) == counts
