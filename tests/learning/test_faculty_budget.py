"""Statement budgets of the faculty's own pages: "To grade" and the faculty dashboard stay
within 12 statements and send as many for a teacher with much to grade and many courses as for
one with little."""

from __future__ import annotations

from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment.models import AttemptStatus, QuizAttempt
from tests.factories import PASSWORD
from tests.learning.factories.assign import enroll, make_assignment, make_course, make_quiz, make_submission

BUDGET = 12


def _teacher_with_work(make_user, courses: int, assignments: int, students: int):
    """A faculty member owning ``courses`` courses, each with ``assignments`` assignments and
    a quiz, ``students`` students enrolled who all submitted every assignment and left the
    quiz's essays to grade."""
    teacher = make_user(role="faculty")
    for _ in range(courses):
        course = make_course(teacher)
        quiz = make_quiz(course)
        work = [make_assignment(course) for _ in range(assignments)]
        for _ in range(students):
            student = make_user(role="student")
            enroll(course, student)
            for assignment in work:
                make_submission(assignment, student)
            db.session.add(QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=1,
                                       status=AttemptStatus.SUBMITTED, started_at=utcnow(), submitted_at=utcnow()))
    db.session.flush()
    return teacher


def _count(app, statements, teacher, url: str, **headers) -> tuple[int, str]:
    client = app.test_client()
    client.post("/auth/login", data={"email": teacher.email, "password": PASSWORD})
    client.get(url, headers=headers)  # warm up (first-use caches)
    with statements() as counter:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    return counter.count, response.get_data(as_text=True)


def test_to_grade_does_not_grow_with_the_work_waiting(app, statements, make_user):
    little = _teacher_with_work(make_user, courses=1, assignments=1, students=1)
    much = _teacher_with_work(make_user, courses=3, assignments=4, students=6)
    small, small_body = _count(app, statements, little, "/learning/grading")
    large, large_body = _count(app, statements, much, "/learning/grading")
    assert small_body.count("1 waiting") == 1 and "1 attempt with essays" in small_body
    assert large_body.count("6 waiting") == 12 and large_body.count("6 attempts with essays") == 3
    assert large == small <= BUDGET
    fragment, _ = _count(app, statements, much, "/learning/grading", **{"HX-Request": "true"})
    assert fragment <= small


def test_faculty_dashboard_does_not_grow_with_courses_and_students(app, statements, make_user):
    few = _teacher_with_work(make_user, courses=1, assignments=1, students=1)
    many = _teacher_with_work(make_user, courses=8, assignments=1, students=3)
    small, _ = _count(app, statements, few, "/dashboard")
    large, body = _count(app, statements, many, "/dashboard")
    assert body.count("3 students") == 6  # the card lists six courses
    assert large == small <= BUDGET


def test_grading_screen_does_not_grow_with_submissions(app, statements, make_user):
    counts = []
    for students in (1, 12):
        teacher = make_user(role="faculty")
        course = make_course(teacher)
        assignment = make_assignment(course)
        submissions = []
        for _ in range(students):
            student = make_user(role="student")
            enroll(course, student)
            submissions.append(make_submission(assignment, student))
        url = f"/learning/assignments/{assignment.id}/grade"
        first, _ = _count(app, statements, teacher, url)
        middle, body = _count(app, statements, teacher, f"{url}?s={submissions[len(submissions) // 2].id}")
        assert f"{students} to grade · 0 graded" in body and "No submission" not in body
        counts.append((first, middle))
    assert counts[0] == counts[1]
    assert max(counts[1]) <= BUDGET
