"""The catalog, course and lesson pages, and their htmx actions, with and without HX-Request."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from portal.db import db
from portal.learning.education import services
from portal.learning.education.models import CourseLevel, CourseStatus, EnrollmentStatus
from tests.learning.factories.catalog import (
    enrollment_of,
    lessons_of,
    make_course,
    make_lesson,
    make_module,
)

HX = {"HX-Request": "true"}


def text(response) -> str:
    return response.get_data(as_text=True)


def course_titles(body: str) -> list[str]:
    return re.findall(r'class="course-card-title"><a href="[^"]+">([^<]+)</a>', body)


@pytest.fixture
def student(login_as):
    return login_as("student")


# ------------------------------------------------------------------ catalog


def test_catalog_lists_published_courses_only(client, student):
    shown = make_course(title="Published Pottery")
    make_course(title="Draft Dancing", status=CourseStatus.DRAFT)
    make_course(title="Archived Astronomy", status=CourseStatus.ARCHIVED)
    response = client.get("/learning/courses")
    assert response.status_code == 200
    titles = course_titles(text(response))
    assert shown.title in titles
    assert "Draft Dancing" not in text(response) and "Archived Astronomy" not in text(response)


def test_catalog_full_text_search_ranks_title_matches_first(client, student):
    make_course(title="Cooking for beginners", summary="Kitchen basics.", description="Knife skills.")
    make_course(title="Gardening", summary="Grow things.", description="A little cooking with herbs at the end.")
    make_course(title="Statistics", summary="Numbers.", description="Means and medians.")
    titles = course_titles(text(client.get("/learning/courses", query_string={"q": "cooking"})))
    assert titles == ["Cooking for beginners", "Gardening"]


def test_catalog_search_uses_web_search_syntax(client, student):
    make_course(title="Python for data", description="pandas and numpy")
    make_course(title="Python for the web", description="flask and templates")
    titles = course_titles(text(client.get("/learning/courses", query_string={"q": "python -flask"})))
    assert titles == ["Python for data"]
    titles = course_titles(text(client.get("/learning/courses", query_string={"q": '"for the web"'})))
    assert titles == ["Python for the web"]


def test_catalog_short_query_matches_titles(client, student):
    make_course(title="R programming")
    make_course(title="Typography")
    titles = course_titles(text(client.get("/learning/courses", query_string={"q": "R p"})))
    assert titles == ["R programming"]


def test_catalog_search_escapes_like_wildcards(client, student):
    make_course(title="Percent 100% sure")
    make_course(title="Nothing special")
    assert course_titles(text(client.get("/learning/courses", query_string={"q": "%"}))) == ["Percent 100% sure"]


def test_catalog_filters(client, student, make_user):
    ada = make_user("faculty", full_name="Ada Lovelace")
    make_course(title="Intro maths", category="Maths", level=CourseLevel.BEGINNER, instructor=ada)
    make_course(title="Hard maths", category="Maths", level=CourseLevel.ADVANCED)
    make_course(title="Intro art", category="Art", level=CourseLevel.BEGINNER)

    def titles(**args):
        return sorted(course_titles(text(client.get("/learning/courses", query_string=args))))

    assert titles(category="Maths") == ["Hard maths", "Intro maths"]
    assert titles(category="Maths", level="beginner") == ["Intro maths"]
    assert titles(instructor=str(ada.id)) == ["Intro maths"]
    # Nonsense filters are ignored rather than errors.
    assert len(titles(level="expert", instructor="nope")) >= 3
    page = text(client.get("/learning/courses"))
    assert '<option value="Maths"' in page and "Ada Lovelace" in page


def test_catalog_pagination(client, student):
    for i in range(14):
        make_course(title=f"Paged course {i:02}", category="Paging")
    first = text(client.get("/learning/courses", query_string={"category": "Paging"}))
    second = text(client.get("/learning/courses", query_string={"category": "Paging", "page": 2}))
    assert len(course_titles(first)) == 12 and len(course_titles(second)) == 2
    assert not set(course_titles(first)) & set(course_titles(second))
    assert "Page 1 of 2" in first and "category=Paging" in first and "page=2" in first
    beyond = client.get("/learning/courses", query_string={"category": "Paging", "page": 9})
    assert beyond.status_code == 200 and "only 2 pages" in text(beyond)
    assert client.get("/learning/courses", query_string={"page": "x"}).status_code == 200


def test_catalog_live_search_returns_only_the_results_block(client, student):
    make_course(title="Live searching")
    full = client.get("/learning/courses", query_string={"q": "searching"})
    fragment = client.get("/learning/courses", query_string={"q": "searching"}, headers=HX)
    assert "<html" in text(full) and 'hx-trigger="input changed delay:300ms, search"' in text(full)
    assert "<html" not in text(fragment)
    assert text(fragment).lstrip().startswith('<section id="results"')
    assert course_titles(text(fragment)) == ["Live searching"]
    assert "HX-Request" in fragment.headers["Vary"]


def test_catalog_shows_the_students_progress(client, student):
    course = make_course(title="Progressing", modules=1, lessons_per_module=2, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    services.complete_lesson(student, lessons_of(course)[0].id)
    body = text(client.get("/learning/courses", query_string={"q": "Progressing"}))
    assert 'value="50"' in body


def test_catalog_is_open_to_faculty(client, login_as):
    login_as("faculty")
    make_course(title="Seen by faculty")
    assert "Seen by faculty" in text(client.get("/learning/courses"))


# ------------------------------------------------------------------ course page


def test_course_page_shows_outline_in_order_and_rendered_description(client, student):
    course = make_course(title="Outlined", description="# Welcome\n\nSome *emphasis*.")
    first = make_module(course, title="First steps")
    second = make_module(course, title="Going further")
    make_lesson(second, title="Lesson B1")
    make_lesson(first, title="Lesson A1")
    make_lesson(first, title="Lesson A2")
    body = text(client.get(f"/learning/courses/{course.slug}"))
    assert body.index("First steps") < body.index("Lesson A1") < body.index("Lesson A2") < body.index(
        "Going further") < body.index("Lesson B1")
    assert "<h2 id=\"s-welcome\">Welcome</h2>" in body and "<em>emphasis</em>" in body
    assert "Enrol in this course" in body
    # Not enrolled: lessons are not links yet.
    assert f"/learning/courses/{course.slug}/lessons/" not in body


def test_course_page_shows_lock_for_gated_modules(client, student):
    course = make_course(title="Gated")
    first = make_module(course, title="Open one")
    make_lesson(first)
    second = make_module(course, title="Closed one", requires_previous=True)
    locked_lesson = make_lesson(second)
    services.enrol(student, course.id)
    body = text(client.get(f"/learning/courses/{course.slug}"))
    assert body.count('class="icon icon-lock"') == 1
    assert f"/lessons/{locked_lesson.id}" not in body  # no link into the locked module
    services.complete_lesson(student, lessons_of(course)[0].id)
    body = text(client.get(f"/learning/courses/{course.slug}"))
    assert 'class="icon icon-lock"' not in body
    assert f"/lessons/{locked_lesson.id}" in body


def test_unknown_or_draft_course_is_404(client, student):
    draft = make_course(status=CourseStatus.DRAFT)
    assert client.get("/learning/courses/no-such-course").status_code == 404
    assert client.get(f"/learning/courses/{draft.slug}").status_code == 404


def test_staff_see_their_draft(client, login_as):
    teacher = login_as("faculty")
    draft = make_course(title="Work in progress", status=CourseStatus.DRAFT, instructor=teacher)
    response = client.get(f"/learning/courses/{draft.slug}")
    assert response.status_code == 200 and "only staff see this page" in text(response)


def test_enrol_without_javascript_redirects_back(client, student):
    course = make_course(modules=1, lessons_per_module=1)
    response = client.post(f"/learning/courses/{course.slug}/enrol")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == f"/learning/courses/{course.slug}"
    assert enrollment_of(student, course).status == EnrollmentStatus.ACTIVE
    page = text(client.get(f"/learning/courses/{course.slug}"))
    assert "You are enrolled" in page and "Start the first lesson" in page and "Leave the course" in page


def test_enrol_with_htmx_swaps_the_study_panel(client, student):
    course = make_course(modules=1, lessons_per_module=1)
    response = client.post(f"/learning/courses/{course.slug}/enrol", headers=HX)
    body = text(response)
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="study"') and "<html" not in body
    assert "You are enrolled" in body and f"/lessons/{lessons_of(course)[0].id}" in body
    assert enrollment_of(student, course) is not None


def test_leave_with_and_without_htmx(client, student):
    course = make_course(modules=1, lessons_per_module=1)
    services.enrol(student, course.id)
    fragment = client.post(f"/learning/courses/{course.slug}/leave", headers=HX)
    assert fragment.status_code == 200 and "Enrol again" in text(fragment)
    assert enrollment_of(student, course).status == EnrollmentStatus.LEFT
    again = client.post(f"/learning/courses/{course.slug}/leave")  # not enrolled any more
    assert again.status_code == 302
    assert "You are not enrolled" in text(client.get(f"/learning/courses/{course.slug}"))


def test_leave_refusal_with_htmx_shows_the_message_in_the_panel(client, student):
    course = make_course(modules=1, lessons_per_module=1)
    db.session.commit()  # the refusal rolls the request back; the course must outlive that
    response = client.post(f"/learning/courses/{course.slug}/leave", headers=HX)
    assert response.status_code == 409
    assert "You are not enrolled" in text(response) and 'id="study"' in text(response)


def test_enrol_in_a_draft_is_404(client, student):
    draft = make_course(status=CourseStatus.DRAFT)
    assert client.post(f"/learning/courses/{draft.slug}/enrol").status_code == 404


def test_faculty_cannot_enrol(client, login_as):
    login_as("faculty")
    course = make_course()
    assert client.post(f"/learning/courses/{course.slug}/enrol").status_code == 403
    assert "Enrol in this course" not in text(client.get(f"/learning/courses/{course.slug}"))


def test_continue_where_you_left_off(client, student):
    course = make_course(modules=2, lessons_per_module=2)
    services.enrol(student, course.id)
    third = lessons_of(course)[2]
    client.get(f"/learning/courses/{course.slug}/lessons/{third.id}")
    body = text(client.get(f"/learning/courses/{course.slug}"))
    assert "Continue where you left off" in body
    link = re.search(r'<a href="([^"]+)" role="button" class="wide-button">Continue', body).group(1)
    assert link == f"/learning/courses/{course.slug}/lessons/{third.id}"


# ------------------------------------------------------------------ lesson page


def test_lesson_page_renders_markdown_with_previous_and_next(client, student):
    course = make_course(modules=1)
    module = make_module(course, title="Only")
    lessons = [make_lesson(module, title=t, body=b) for t, b in
               [("One", "first"), ("Two", "## Sub\n\n- item **bold**"), ("Three", "third")]]
    services.enrol(student, course.id)
    body = text(client.get(f"/learning/courses/{course.slug}/lessons/{lessons[1].id}"))
    assert "<h3 id=\"s-sub\">Sub</h3>" in body and "<strong>bold</strong>" in body
    assert f'href="/learning/courses/{course.slug}/lessons/{lessons[0].id}" rel="prev"' in body
    assert f'href="/learning/courses/{course.slug}/lessons/{lessons[2].id}" rel="next"' in body
    assert "Mark complete" in body


def test_opening_a_lesson_records_progress(client, student):
    course = make_course(modules=1, lessons_per_module=2)
    services.enrol(student, course.id)
    lesson = lessons_of(course)[1]
    assert client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}").status_code == 200
    enrollment = enrollment_of(student, course)
    assert enrollment.last_lesson_id == lesson.id and enrollment.last_activity_at is not None


def test_lesson_of_another_course_under_this_slug_is_404(client, student):
    course = make_course(modules=1, lessons_per_module=1)
    other = make_course(modules=1, lessons_per_module=1)
    services.enrol(student, course.id)
    services.enrol(student, other.id)
    response = client.get(f"/learning/courses/{course.slug}/lessons/{lessons_of(other)[0].id}")
    assert response.status_code == 404


def test_locked_lesson_page_explains_why(client, student):
    course = make_course()
    first = make_module(course, title="Foundations")
    make_lesson(first)
    second = make_module(course, title="Sequel", requires_previous=True)
    locked = make_lesson(second)
    services.enrol(student, course.id)
    response = client.get(f"/learning/courses/{course.slug}/lessons/{locked.id}")
    assert response.status_code == 409
    assert "“Sequel” opens once you have passed “Foundations”" in text(response)


def test_mark_complete_with_htmx_triggers_the_progress_refresh(client, student):
    course = make_course(modules=1, lessons_per_module=2, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    first, second = lessons_of(course)
    page = text(client.get(f"/learning/courses/{course.slug}/lessons/{first.id}"))
    assert 'hx-trigger="course-progress from:body"' in page
    response = client.post(f"/learning/courses/{course.slug}/lessons/{first.id}/complete", headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "course-progress"
    body = text(response)
    assert body.lstrip().startswith('<div id="lesson-complete"') and "<html" not in body
    assert "You have completed this lesson" in body and f"/lessons/{second.id}" in body
    progress = client.get(f"/learning/courses/{course.slug}/progress", headers=HX)
    assert 'value="50"' in text(progress) and "1 of 2 lessons" in text(progress)


def test_mark_complete_without_javascript_redirects_to_the_lesson(client, student):
    course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    lesson = lessons_of(course)[0]
    response = client.post(f"/learning/courses/{course.slug}/lessons/{lesson.id}/complete")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == f"/learning/courses/{course.slug}/lessons/{lesson.id}"
    page = text(client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}"))
    assert "you completed" in page and "You have completed this lesson" in page
    assert enrollment_of(student, course).status == EnrollmentStatus.COMPLETED


def test_staff_preview_of_a_lesson(client, login_as):
    teacher = login_as("faculty")
    course = make_course(modules=1, lessons_per_module=1, instructor=teacher)
    lesson = lessons_of(course)[0]
    response = client.get(f"/learning/courses/{course.slug}/lessons/{lesson.id}")
    assert response.status_code == 200
    assert "Preview" in text(response) and "Mark complete" not in text(response)


# ------------------------------------------------------------------ dashboard and navigation


def test_student_dashboard_shows_courses_progress_continue_and_achievements(client, student):
    course = make_course(title="Dash course", modules=1, lessons_per_module=2, requires_quizzes_passed=False)
    services.enrol(student, course.id)
    first = lessons_of(course)[0]
    services.view_lesson(student, first.id)
    services.complete_lesson(student, first.id)
    body = text(client.get("/dashboard"))
    assert "Dash course" in body and 'value="50"' in body
    assert f'href="/learning/courses/{course.slug}/lessons/{first.id}"' in body
    assert "Continue where you left off" in body
    assert "First lesson completed" in body


def test_learning_link_points_at_the_catalog(client, student):
    assert re.search(r'<a href="/learning/courses"\s*>Learning</a>', text(client.get("/dashboard")))
    assert re.search(r'<a href="/learning/courses"\s*aria-current="page">Learning</a>', text(client.get("/learning/courses")))
