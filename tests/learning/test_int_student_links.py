"""A student reaches everything from the dashboard and the course page: quizzes, assignments,
released grades, certificates and achievements; course staff reach the editor and gradebook."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlsplit

import pytest

from portal.learning.education import services
from portal.learning.education.models import AchievementKind, EnrollmentStatus
from portal.learning.lms.models import ManagementRole
from tests.learning.factories.assign import enroll, make_assignment, make_submission, release_grade
from tests.learning.factories.catalog import lessons_of, make_course, make_lesson, make_module, make_quiz
from tests.learning.factories.certificates import add_staff, complete

HX = {"HX-Request": "true"}


def text(response) -> str:
    return response.get_data(as_text=True)


def learning_links(body: str) -> list[str]:
    """The distinct in-portal hrefs of a page under /learning (and the dashboard), in order."""
    seen = []
    for href in re.findall(r'href="([^"]+)"', body):
        href = unescape(href)
        if urlsplit(href).path.startswith("/learning/") and href not in seen:
            seen.append(href)
    return seen


def follow_all(client, hrefs: list[str]) -> None:
    for href in hrefs:
        response = client.get(href)
        assert response.status_code == 200, f"{href} answered {response.status_code}"


@pytest.fixture
def studying(login_as):
    """A student in two courses: one in progress (a module quiz, an assignment with a released
    grade), one completed with its certificate and achievement."""
    student = login_as("student")
    ongoing = make_course(title="Ongoing Origami", modules=1, lessons_per_module=2)
    quiz = make_quiz(ongoing)
    enroll(ongoing, student)
    graded = make_assignment(ongoing, title="Fold a crane")
    release_grade(graded, student, 8)
    make_assignment(ongoing, title="Fold a frog")
    done = make_course(title="Finished Felting", modules=1, lessons_per_module=1)
    enroll(done, student, EnrollmentStatus.COMPLETED)
    certificate = complete(student, done)
    services.award(student, AchievementKind.FIRST_LESSON, "First lesson completed")
    services.award(student, AchievementKind.COURSE_COMPLETED, "Completed the felting course", course_id=done.id)
    return {"student": student, "ongoing": ongoing, "done": done, "quiz": quiz, "graded": graded,
            "certificate": certificate}


def test_every_link_from_the_dashboard_and_course_pages_opens(client, studying):
    ongoing, done = studying["ongoing"], studying["done"]
    dashboard = text(client.get("/dashboard"))
    links = learning_links(dashboard)
    for expected in ("/learning/grades", "/learning/certificates/mine", "/learning/achievements",
                     f"/learning/courses/{ongoing.slug}", f"/learning/courses/{done.slug}"):
        assert expected in links, expected
    follow_all(client, links)

    page = text(client.get(f"/learning/courses/{ongoing.slug}"))
    course_links = learning_links(page)
    for expected in (f"/learning/courses/{ongoing.id}/quizzes/available",
                     f"/learning/courses/{ongoing.id}/assignments",
                     f"/learning/grades?course={ongoing.id}",
                     f"/learning/quizzes/{studying['quiz'].id}",
                     "/learning/certificates/mine"):
        assert expected in course_links, expected
    follow_all(client, course_links)

    completed_page = text(client.get(f"/learning/courses/{done.slug}"))
    certificate_url = f"/learning/certificates/{studying['certificate'].code}"
    assert certificate_url in learning_links(completed_page)
    follow_all(client, learning_links(completed_page))

    # One level further: the assignments list leads to the graded assignment, whose page shows the grade.
    assignments = text(client.get(f"/learning/courses/{ongoing.id}/assignments"))
    assert f"/learning/assignments/{studying['graded'].id}" in learning_links(assignments)
    assert "Your grade" in text(client.get(f"/learning/assignments/{studying['graded'].id}"))


def test_my_grades_lists_released_grades_only(client, studying):
    ongoing = studying["ongoing"]
    unreleased = make_assignment(ongoing, title="Fold a swan")
    make_submission(unreleased, studying["student"])
    body = text(client.get("/learning/grades"))
    assert "Fold a crane" in body and "8.0" in body
    assert "Fold a swan" not in body
    filtered = text(client.get("/learning/grades", query_string={"course": str(ongoing.id)}))
    assert "Fold a crane" in filtered
    other = make_course(title="Other Oils")
    assert "Fold a crane" not in text(client.get("/learning/grades", query_string={"course": str(other.id)}))


def test_my_grades_hides_other_students_grades(client, studying, make_user):
    stranger = make_user(role="student")
    release_grade(make_assignment(studying["ongoing"], title="Someone else's"), stranger, 3)
    assert "Someone else" not in text(client.get("/learning/grades"))


def test_my_grades_and_achievements_stay_within_budget(client, studying, statements):
    for index in range(6):
        release_grade(make_assignment(studying["ongoing"], title=f"Extra {index}"), studying["student"], 5)
    client.get("/learning/grades")  # warm up
    with statements() as counter:
        assert client.get("/learning/grades").status_code == 200
    assert counter.count <= 12, counter.statements
    with statements() as counter:
        assert client.get("/learning/achievements").status_code == 200
    assert counter.count <= 12, counter.statements


def test_my_grades_paginates(client, studying):
    for index in range(21):
        release_grade(make_assignment(studying["ongoing"], title=f"Paged {index:02d}"), studying["student"], 5)
    first = text(client.get("/learning/grades"))
    assert 'rel="next"' in first
    second = text(client.get("/learning/grades", query_string={"page": 2}))
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_my_achievements_lists_the_students_own(client, studying, make_user):
    stranger = make_user(role="student")
    services.award(stranger, AchievementKind.STREAK_7, "Stranger streak")
    body = text(client.get("/learning/achievements"))
    assert "First lesson completed" in body
    assert "Finished Felting" in body  # the course completion achievement names its course
    assert "Stranger streak" not in body


@pytest.mark.parametrize("path", ["/learning/grades", "/learning/achievements"])
def test_record_pages_are_for_students(client, login_as, path):
    login_as("faculty")
    assert client.get(path).status_code == 403


def test_course_staff_get_editor_and_gradebook_links(client, login_as):
    teacher = login_as("faculty")
    course = make_course(title="Taught Tapestry", modules=1, lessons_per_module=1)
    add_staff(course, teacher, ManagementRole.OWNER)
    body = text(client.get(f"/learning/courses/{course.slug}"))
    links = learning_links(body)
    assert f"/learning/manage/{course.id}" in links
    assert f"/learning/courses/{course.id}/gradebook" in links
    follow_all(client, links)


def test_an_assistant_gets_the_gradebook_but_not_the_editor(client, login_as):
    assistant = login_as("faculty")
    course = make_course(title="Assisted Aquarelle")
    add_staff(course, assistant, ManagementRole.ASSISTANT)
    links = learning_links(text(client.get(f"/learning/courses/{course.slug}")))
    assert f"/learning/courses/{course.id}/gradebook" in links
    assert f"/learning/manage/{course.id}" not in links


def test_students_get_no_staff_links(client, studying):
    links = learning_links(text(client.get(f"/learning/courses/{studying['ongoing'].slug}")))
    assert not [href for href in links if "/manage/" in href or href.endswith("/gradebook")]


def test_mark_complete_updates_the_side_outline_out_of_band(client, login_as):
    student = login_as("student")
    course = make_course(title="Ticking Tatting")
    first_module = make_module(course, title="First")
    lesson = make_lesson(first_module, title="Only lesson")
    second_module = make_module(course, title="Second", requires_previous=True)
    opened = make_lesson(second_module, title="Behind the lock")
    enroll(course, student)
    page = text(client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}"))
    # Locked until the first module is passed: neither the outline nor "next" links to it.
    assert f"/lessons/{opened.id}" not in page
    assert "Behind the lock opens when you pass this module" in page

    response = client.post(f"/learning/courses/{course.slug}/lessons/{lesson.id}/complete", headers=HX)
    body = text(response)
    assert response.status_code == 200
    oob = re.search(r'<div id="lesson-outline" hx-swap-oob="true">(.*?)</div>\s*<nav', body, re.S)
    assert oob is not None, body
    outline = oob.group(1)
    assert re.search(r'<li class="is-done is-current">\s*<svg class="icon icon-check"', outline)
    assert f"/lessons/{opened.id}" in outline  # the next module opened with it
    nav = re.search(r'<nav id="lesson-nav" class="lesson-nav" aria-label="Lessons" hx-swap-oob="true">(.*?)</nav>',
                    body, re.S)
    assert nav is not None and f'/lessons/{opened.id}" rel="next"' in nav.group(1)

    # Without htmx nothing out of band comes back: a redirect to the lesson page.
    other = make_lesson(second_module, title="Second lesson")
    response = client.post(f"/learning/courses/{course.slug}/lessons/{other.id}/complete")
    assert response.status_code == 302


def test_the_lesson_page_wraps_its_outline_for_the_swap(client, login_as):
    student = login_as("student")
    course = make_course(title="Wrapped Weaving", modules=1, lessons_per_module=1)
    enroll(course, student)
    lesson = lessons_of(course)[0]
    page = text(client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}"))
    assert '<div id="lesson-outline">' in page



def test_dashboard_shows_what_is_due_next_and_recent_grades(client, login_as, make_user):
    from datetime import timedelta
    from decimal import Decimal

    from portal.db import db
    from portal.db.base import utcnow
    from portal.learning.lms import assignments as assignment_service
    from portal.learning.lms import grading
    from tests.learning.factories import assign as factories_assign
    from tests.learning.factories import quiz as factories_quiz

    student = login_as("student")
    owner = make_user(role="faculty")
    course = factories_assign.make_course(owner, title="Tide Tables")
    enroll(course, student)
    now = utcnow()
    make_assignment(course, title="Sketch a tide chart", due_at=now + timedelta(days=2))
    make_assignment(course, title="Long past", due_at=now - timedelta(days=1))
    factories_quiz.make_quiz(course, title="Moon phases check", closes_at=now + timedelta(days=3))
    handed_in = make_assignment(course, title="Done already", due_at=now + timedelta(hours=5))
    assignment_service.submit(student, handed_in.id, text="Done")
    graded = make_assignment(course, title="Graded essay")
    submission = assignment_service.submit(student, graded.id, text="My essay")
    grading.grade_submission(owner, submission.id, grading.GradeChange(raw_score=Decimal(8), feedback="Well **argued**."))
    grading.release_grades(owner, graded.id)
    db.session.commit()

    page = client.get("/dashboard").get_data(as_text=True)
    card = page.split('id="due-next"')[1].split("</article>")[0]
    due, grades = card.split("Recent grades")
    assert "Sketch a tide chart" in due and "Moon phases check" in due
    assert due.index("Sketch a tide chart") < due.index("Moon phases check")  # soonest first
    assert "Long past" not in due and "Done already" not in due and "Graded essay" not in due
    assert "Graded essay" in grades and "8 / 10" in grades and "Well argued." in grades
