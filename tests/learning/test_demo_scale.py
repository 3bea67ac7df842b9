"""``seed-demo --scale``: the learning data at scale (a generated catalog and one large course
with a full gradebook), built here with small counts: what it creates, that a second run adds
nothing, and that the gradebook and the catalog search load within the statement budget."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal import demo
from portal.accounts.models import Role, User
from portal.db import db
from portal.learning import demo as learning_demo
from portal.learning.assessment.models import (
    Answer,
    AttemptStatus,
    Gradebook,
    Quiz,
    QuizAttempt,
    QuizQuestion,
)
from portal.learning.education.models import Course, CourseStatus, Enrollment, Lesson, Module, Progress
from portal.learning.lms.models import Assignment, CourseManagement, Grade, ManagementRole, Submission

BUDGET = 12
SCALE = 30
SMALL = {"catalog": 40, "students": 25, "assignments": 4, "quizzes": 2}
QUESTIONS = 5  # the default questions per quiz


@pytest.fixture(autouse=True)
def demo_logins_file(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "CREDENTIALS_FILE", tmp_path / "demo-logins.txt")


class Bar:
    def __init__(self):
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _catalog_slugs() -> list[str]:
    return [learning_demo.catalog_spec(n)["slug"] for n in range(1, SMALL["catalog"] + 1)]


def _large_course() -> Course:
    return db.session.scalars(select(Course).where(Course.slug == learning_demo.LARGE_COURSE_SLUG)).one()


def _seed() -> Bar:
    bar = Bar()
    demo.seed(SCALE, bar, learning=SMALL)
    return bar


def _totals() -> tuple[int, ...]:
    return tuple(_count(model) for model in (User, Course, Module, Lesson, CourseManagement, Enrollment, Progress,
                                             Assignment, Submission, Grade, Quiz, QuizQuestion, QuizAttempt, Answer,
                                             Gradebook))


def test_the_catalog_is_generated_published_with_a_module_and_a_lesson_each(app):
    bar = _seed()
    assert bar.done == SCALE + SMALL["catalog"] + SMALL["students"]
    courses = db.session.scalars(select(Course).where(Course.slug.in_(_catalog_slugs()))).all()
    assert len(courses) == SMALL["catalog"]
    assert all(c.status == CourseStatus.PUBLISHED and c.published_at is not None for c in courses)
    ids = [c.id for c in courses]
    assert _count(Module, Module.course_id.in_(ids)) == SMALL["catalog"]
    assert _count(Lesson, Lesson.course_id.in_(ids)) == SMALL["catalog"]
    # varied enough for search and filters to mean something
    assert len({c.title for c in courses}) >= SMALL["catalog"] * 3 // 4
    assert len({c.summary for c in courses}) == SMALL["catalog"]
    assert len({c.category for c in courses}) >= 5 and len({c.level for c in courses}) == 3
    # each taught by one of the catalog instructors, who owns it
    owners = dict(db.session.execute(select(CourseManagement.course_id, CourseManagement.user_id)
                                     .where(CourseManagement.course_id.in_(ids),
                                            CourseManagement.role == ManagementRole.OWNER)).all())
    assert {c.id: c.instructor_id for c in courses} == owners
    roles = set(db.session.scalars(select(User.role).where(User.id.in_(set(owners.values())))))
    assert roles == {Role.FACULTY} and len(set(owners.values())) > 1


def test_the_large_course_has_a_full_gradebook(app):
    _seed()
    course = _large_course()
    teacher = db.session.scalar(select(User).where(User.email == "faculty@azora.example"))
    assert course.status == CourseStatus.PUBLISHED and course.instructor_id == teacher.id
    assert db.session.scalar(select(CourseManagement.role).where(
        CourseManagement.course_id == course.id, CourseManagement.user_id == teacher.id)) == ManagementRole.OWNER
    enrolled = set(db.session.scalars(select(Enrollment.user_id).where(Enrollment.course_id == course.id)))
    first_scale = set(db.session.scalars(select(User.id).where(User.email.like("scale%@azora.example"))
                                         .order_by(User.email).limit(SMALL["students"])))
    assert enrolled == first_scale
    assignments = db.session.scalars(select(Assignment).where(Assignment.course_id == course.id)).all()
    quizzes = db.session.scalars(select(Quiz).where(Quiz.course_id == course.id)).all()
    assert len(assignments) == SMALL["assignments"] and all(a.published for a in assignments)
    assert len(quizzes) == SMALL["quizzes"] and all(q.published for q in quizzes)
    assert _count(QuizQuestion, QuizQuestion.quiz_id.in_([q.id for q in quizzes])) == SMALL["quizzes"] * QUESTIONS

    cells = SMALL["students"] * SMALL["assignments"]
    grades = db.session.scalars(select(Grade).where(Grade.assignment_id.in_([a.id for a in assignments]))).all()
    assert cells * 0.7 <= len(grades) <= cells
    points = {a.id: a.points for a in assignments}
    assert all(g.released_at is not None and 0 <= g.score <= g.raw_score <= points[g.assignment_id] for g in grades)
    assert _count(Submission, Submission.assignment_id.in_(list(points))) >= len(grades)

    attempts = db.session.scalars(select(QuizAttempt).where(QuizAttempt.quiz_id.in_([q.id for q in quizzes]))).all()
    assert len(attempts) >= SMALL["students"] * SMALL["quizzes"] * 0.7
    assert all(a.status == AttemptStatus.GRADED and a.score <= a.max_score == QUESTIONS for a in attempts)
    # each attempt's answers add up to its score
    awarded = dict(db.session.execute(select(Answer.attempt_id, func.sum(Answer.points_awarded))
                                      .where(Answer.attempt_id.in_([a.id for a in attempts]))
                                      .group_by(Answer.attempt_id)).all())
    assert all(awarded[a.id] == a.score for a in attempts)

    # the stored overall grades agree with a recomputation by the gradebook itself
    from portal.learning.assessment import gradebook

    books = db.session.scalars(select(Gradebook).where(Gradebook.course_id == course.id)).all()
    assert len(books) == SMALL["students"]
    stored = {(b.user_id, b.percent, b.letter, b.status) for b in books}
    db.session.flush()
    recomputed = {(b.user_id, b.percent, b.letter, b.status)
                  for b in (gradebook.recompute(course.id, user_id) for user_id in enrolled)}
    assert stored == recomputed


def test_a_second_run_adds_nothing(app):
    _seed()
    before = _totals()
    bar = _seed()
    assert _totals() == before
    # the bar still reaches its end: what exists counts as done
    assert bar.done == SMALL["catalog"] + SMALL["students"]


def test_below_the_threshold_the_scale_option_adds_only_students(app):
    result = app.test_cli_runner().invoke(args=["seed-demo", "--scale", "12"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(Course.id).where(Course.slug == learning_demo.LARGE_COURSE_SLUG)) is None
    assert _count(Course, Course.slug.in_(_catalog_slugs())) == 0
    assert demo.learning_units(demo.LEARNING_SCALE - 1) == 0
    counts = demo.LEARNING_COUNTS
    assert demo.learning_units(demo.LEARNING_SCALE) == counts["catalog"] + counts["students"]
    assert (counts["catalog"], counts["students"], counts["assignments"], counts["quizzes"]) == (1000, 500, 20, 10)


def _login(app, email: str):
    client = app.test_client()
    response = client.post("/auth/login", data={"email": email, "password": demo.demo_password()})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def test_the_gradebook_and_its_export_are_within_budget(app, statements):
    _seed()
    course = _large_course()
    client = _login(app, "faculty@azora.example")
    url = f"/learning/courses/{course.id}/gradebook"
    client.get(url)
    with statements() as counted:
        response = client.get(url)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.count('<th scope="row">') == SMALL["students"]
    assert body.count('class="item-head') == SMALL["assignments"] + SMALL["quizzes"]
    assert counted.count <= BUDGET, counted.statements

    with statements() as counted:
        response = client.get(f"{url}.csv")
        lines = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200
    assert len(lines) == 1 + SMALL["students"]
    assert counted.count <= BUDGET, counted.statements


def test_the_export_has_a_line_per_student_and_named_item_kinds(app):
    _seed()
    course = _large_course()
    client = _login(app, "faculty@azora.example")
    response = client.get(f"/learning/courses/{course.id}/gradebook.csv")
    assert response.status_code == 200
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == 1 + SMALL["students"]
    assert lines[0].endswith("Computed %,Override %,Override reason,Final %,Letter")
    assert "Quiz 01 (quiz)" in lines[0] and "Problem set 01 (assignment)" in lines[0]
    assert {line.split(",")[1] for line in lines[1:]} == set(db.session.scalars(
        select(User.email).join(Enrollment, Enrollment.user_id == User.id).where(Enrollment.course_id == course.id)))


def test_the_catalog_and_its_search_are_within_budget(app, statements):
    _seed()
    client = _login(app, "student@azora.example")
    client.get("/learning/courses")
    with statements() as counted:
        response = client.get("/learning/courses")
    assert response.status_code == 200 and 'class="course-card"' in response.get_data(as_text=True)
    assert counted.count <= BUDGET, counted.statements

    spec = learning_demo.catalog_spec(1)
    with statements() as counted:
        response = client.get("/learning/courses", query_string={"q": spec["title"]})
    assert response.status_code == 200
    assert counted.count <= BUDGET, counted.statements
    assert f'href="/learning/courses/{spec["slug"]}"' in response.get_data(as_text=True)
    with statements() as counted:
        response = client.get("/learning/courses", query_string={"q": "zebra quantum"},
                              headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'class="course-card"' not in response.get_data(as_text=True)
    assert counted.count <= BUDGET, counted.statements
