"""Who sees what: published courses only, lessons only for enrolled students (and staff
previews), each student's enrolment, progress and achievements private under row-level
security, and no script getting through lesson text, course descriptions or search."""

from __future__ import annotations

import re

import pytest
import sqlalchemy.exc
from sqlalchemy import func, select, update

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.learning.education import services
from portal.learning.education.models import Achievement, CourseStatus, Enrollment, EnrollmentStatus, Progress
from tests.learning.factories.catalog import enrollment_of, lessons_of, make_course, make_lesson, make_module

SCRIPT = "<script>alert('x')</script>"


def text(response) -> str:
    return response.get_data(as_text=True)


# ------------------------------------------------------------------ published only


def test_enrolled_student_loses_access_when_the_course_is_unpublished(client, login_as):
    student = login_as("student")
    course = make_course(modules=1, lessons_per_module=1)
    services.enrol(student, course.id)
    lesson = lessons_of(course)[0]
    assert client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}").status_code == 200
    course.status = CourseStatus.DRAFT
    db.session.commit()  # each refusal below rolls its request back
    assert client.get(f"/learning/courses/{course.slug}").status_code == 404
    assert client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}").status_code == 404
    assert client.get(f"/learning/courses/{course.slug}/progress").status_code == 404


def test_faculty_not_on_the_staff_do_not_see_drafts(client, login_as, make_user):
    login_as("faculty")
    draft = make_course(status=CourseStatus.DRAFT, instructor=make_user("faculty"), modules=1, lessons_per_module=1)
    db.session.commit()
    assert client.get(f"/learning/courses/{draft.slug}").status_code == 404
    assert client.get(f"/learning/courses/{draft.slug}/lessons/{lessons_of(draft)[0].id}").status_code == 404


def test_admin_sees_drafts_and_previews_lessons(client, login_as):
    login_as("admin")
    draft = make_course(status=CourseStatus.DRAFT, modules=1, lessons_per_module=1)
    assert client.get(f"/learning/courses/{draft.slug}").status_code == 200
    response = client.get(f"/learning/courses/{draft.slug}/lessons/{lessons_of(draft)[0].id}")
    assert response.status_code == 200 and "Preview" in text(response)


# ------------------------------------------------------------------ lessons need an enrolment


def test_student_cannot_open_lessons_without_enrolling(client, login_as):
    student = login_as("student")
    course = make_course(title="Members only", modules=1, lessons_per_module=1)
    lesson = lessons_of(course)[0]
    db.session.commit()  # each refusal below rolls its request back
    page = client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}")
    assert page.status_code == 403
    assert "Enrol in “Members only” to open its lessons" in text(page)
    assert "Lesson text." not in text(page)
    fragment = client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}", headers={"HX-Request": "true"})
    assert fragment.status_code == 403 and "<html" not in text(fragment)
    done = client.post(f"/learning/courses/{course.slug}/lessons/{lesson.id}/complete")
    assert done.status_code == 403
    assert db.session.scalar(select(func.count()).select_from(Progress).where(Progress.user_id == student.id)) == 0


def test_student_who_left_cannot_open_lessons(client, login_as):
    student = login_as("student")
    course = make_course(modules=1, lessons_per_module=1)
    services.enrol(student, course.id)
    services.leave(student, course.id)
    assert client.get(f"/learning/courses/{course.slug}/lessons/{lessons_of(course)[0].id}").status_code == 403


def test_compliance_officer_cannot_complete_lessons(client, login_as):
    login_as("compliance")
    course = make_course(modules=1, lessons_per_module=1)
    lesson = lessons_of(course)[0]
    db.session.commit()
    assert client.post(f"/learning/courses/{course.slug}/lessons/{lesson.id}/complete").status_code == 403
    assert client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}").status_code == 403


def test_malformed_lesson_id_is_404(client, login_as):
    login_as("student")
    course = make_course(modules=1, lessons_per_module=1)
    assert client.get(f"/learning/courses/{course.slug}/lessons/not-a-uuid").status_code == 404


# ------------------------------------------------------------------ row-level security


@pytest.fixture
def two_students(make_user):
    alice, bob = make_user("student"), make_user("student")
    course = make_course(modules=1, lessons_per_module=2, requires_quizzes_passed=False)
    for student in (alice, bob):
        services.enrol(student, course.id)
        services.complete_lesson(student, lessons_of(course)[0].id)
    return alice, bob, course


def test_rls_a_student_sees_only_their_own_rows(two_students):
    alice, bob, course = two_students
    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        for model in (Enrollment, Progress, Achievement):
            owners = set(db.session.scalars(select(model.user_id)))
            assert owners == {alice.id}, model.__tablename__
    # Staff see both (the system actor of the tests, and faculty).
    with acting_as(Actor.for_user(alice.id, "faculty"), db.session):
        assert set(db.session.scalars(select(Enrollment.user_id).where(Enrollment.course_id == course.id))) == {
            alice.id, bob.id}


def test_rls_a_student_cannot_change_anothers_progress(two_students):
    alice, bob, course = two_students
    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        changed = db.session.execute(
            update(Enrollment).where(Enrollment.user_id == bob.id).values(progress_percent=0)
            .execution_options(synchronize_session=False)
        ).rowcount
        assert changed == 0
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match="row-level security"), db.session.begin_nested():
            db.session.execute(
                Progress.__table__.insert().values(user_id=bob.id, lesson_id=lessons_of(course)[1].id,
                                                   course_id=course.id, first_viewed_at=func.now())
            )
    assert enrollment_of(bob, course).progress_percent == 50


def test_rls_services_act_for_the_student_only(two_students):
    """Acting as Alice, the services see her enrolment and not Bob's: she completes her own."""
    alice, bob, course = two_students
    second = lessons_of(course)[1]
    with acting_as(Actor.for_user(alice.id, "student"), db.session):
        result = services.complete_lesson(alice, second.id)
        assert result.course_completed
    assert enrollment_of(alice, course).status == EnrollmentStatus.COMPLETED
    assert enrollment_of(bob, course).status == EnrollmentStatus.ACTIVE


def test_course_page_shows_only_the_readers_progress(client, login_as, make_user):
    other = make_user("student")
    course = make_course(modules=1, lessons_per_module=2, requires_quizzes_passed=False)
    services.enrol(other, course.id)
    services.complete_lesson(other, lessons_of(course)[0].id)
    login_as("student")
    body = text(client.get(f"/learning/courses/{course.slug}"))
    assert "Enrol in this course" in body and "Course progress" not in body
    assert 'class="is-done"' not in body


# ------------------------------------------------------------------ no script gets through


def test_lesson_body_with_script_is_sanitized(client, login_as):
    student = login_as("student")
    course = make_course()
    module = make_module(course)
    lesson = make_lesson(module, body=f"Hello\n\n{SCRIPT}\n\n<img src=x onerror=alert(1)>\n\n"
                                      "[click](javascript:alert(1)) and **bold**")
    services.enrol(student, course.id)
    body = text(client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}"))
    assert "<script>alert" not in body
    assert not re.search(r"<[a-z]+[^>]*\son[a-z]+=", body)  # no event handler attribute on any tag
    assert "&lt;img src=x onerror=alert(1)&gt;" in body  # the raw HTML is shown as text
    assert 'href="javascript:' not in body
    assert "&lt;script&gt;" in body  # shown as text, not run
    assert "<strong>bold</strong>" in body


def test_course_description_and_titles_are_escaped(client, login_as):
    login_as("student")
    course = make_course(title=f"Title {SCRIPT}", summary=f"Summary {SCRIPT}", description=f"About {SCRIPT}",
                         modules=1, lessons_per_module=1)
    for url in ("/learning/courses", f"/learning/courses/{course.slug}"):
        body = text(client.get(url))
        assert "<script>alert" not in body, url
        assert "&lt;script&gt;" in body, url


def test_search_query_is_escaped(client, login_as):
    login_as("student")
    body = text(client.get("/learning/courses", query_string={"q": SCRIPT}))
    assert "<script>alert" not in body
    assert "&lt;script&gt;" in body
