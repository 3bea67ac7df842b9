"""The tutor's journey, in a real browser with htmx running: a student asks Elara a question in
the panel beside a lesson, the answer appears without a page load, they follow the cited
passage to its section of the lesson, mark the answer helpful, and find the question in their
Q&A history.

The course is built through the learning services (as its faculty member, in a block that
commits): e2e rows are not rolled back, so every title, slug and address is unique to the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from portal.learning.education import authoring
from portal.learning.education import services as education
from portal.learning.tutoring import passages
from tests.e2e.helpers import address, log_in, search, unique_word
from tests.factories import create_user

pytestmark = pytest.mark.e2e

TIDES = """# Tides and Tide Pools

The sea along the shore rises and falls twice a day.

## Why tides happen

The Moon's gravity pulls on the oceans and raises a bulge of water on the side of the Earth facing the Moon,
and another on the far side. As the Earth turns through both bulges, the shore sees two high tides a day.

## Life in the pools

When the tide goes out, water stays behind in rock pools. Anemones, crabs and small fish live there and
must cope with heat and salt until the sea returns.
"""


@dataclass
class TutorCourse:
    student_email: str
    slug: str
    lesson_id: str
    lesson_title: str


@pytest.fixture
def tutor_course(db_as_tests) -> TutorCourse:
    token = unique_word()
    with db_as_tests():
        faculty = create_user("faculty", full_name="Efua Mensah", email=address("efua"))
        student = create_user("student", full_name="Kofi Boateng", email=address("kofi"))
        course = authoring.create_course(faculty, title=f"Seashore Science {token}", summary="Tides and the shore.",
                                         category="Marine science", level="beginner", estimated_hours=1)
        module = authoring.add_module(faculty, course.id, title="The shore")
        lesson = authoring.add_lesson(faculty, module.id, title="Tides and Tide Pools", body=TIDES,
                                      estimated_minutes=10)
        authoring.change_status(faculty, course.id, "published")
        passages.reindex_course(course)
        education.enrol(student, course.id)
        return TutorCourse(student.email, course.slug, str(lesson.id), lesson.title)


def _mark_page(page: Page) -> None:
    """A mark on the window survives an htmx swap but not a page load."""
    page.evaluate("() => { window.__samePage = true; }")


def _same_page(page: Page) -> bool:
    return page.evaluate("() => window.__samePage === true")


def test_student_asks_beside_a_lesson_follows_the_source_marks_it_and_finds_it_again(page, tutor_course):
    data = tutor_course
    log_in(page, data.student_email)
    lesson_url = f"/learning/courses/{data.slug}/lessons/{data.lesson_id}"

    # The lesson, with Elara's panel beside it (it loads itself once the lesson is shown).
    with page.expect_response(lambda r: "/tutor/panel" in r.url) as loaded:
        page.goto(lesson_url)
    assert loaded.value.request.headers.get("hx-request") == "true"
    expect(page.get_by_role("heading", name=data.lesson_title, level=1)).to_be_visible()
    panel = page.locator("#tutor-panel")
    expect(panel.get_by_role("heading", name="Ask Elara")).to_be_visible()
    _mark_page(page)

    # Ask: the question and the answer appear in the panel without a page load.
    panel.get_by_label("Ask about this lesson").fill("Why are there two high tides every day?")
    with page.expect_response(lambda r: r.url.endswith("/tutor/ask")) as asked:
        panel.get_by_role("button", name="Ask Elara").click()
    assert asked.value.status == 200 and asked.value.request.headers.get("hx-request") == "true"
    messages = panel.get_by_role("log", name="Conversation with Elara")
    expect(messages.locator(".tutor-bubble-student")).to_have_text(re.compile("Why are there two high tides"))
    answer = messages.locator(".tutor-bubble-tutor")
    expect(answer).to_have_count(1)
    expect(answer.locator(".tutor-kind")).to_have_text("Answer")
    expect(answer).to_contain_text("two high tides a day")
    expect(panel.get_by_label("Ask about this lesson")).to_have_value("")  # ready for the next question
    assert _same_page(page)

    # Follow the cited passage: the lesson, at the section the answer came from.
    source = answer.get_by_role("link", name=f"{data.lesson_title} — Why tides happen")
    expect(source).to_have_attribute("href", f"{lesson_url}#s-why-tides-happen")
    source.click()
    expect(page).to_have_url(re.compile(re.escape(lesson_url) + "#s-why-tides-happen$"))
    section = page.locator("#s-why-tides-happen")
    expect(section).to_have_text("Why tides happen")
    expect(section).to_be_in_viewport()

    # The panel beside it still holds the conversation: mark the answer helpful there.
    answer = page.locator("#tutor-panel .tutor-bubble-tutor")
    expect(answer).to_have_count(1)
    _mark_page(page)
    with page.expect_response(lambda r: r.url.endswith("/mark")):
        answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.get_by_role("status")).to_have_text("Thanks: marked helpful.")
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    assert _same_page(page)

    # The question is in the history, from the student menu, and found by a search.
    page.locator("details.dropdown summary").click()
    page.get_by_role("link", name="Tutor history").click()
    expect(page.get_by_role("heading", name="Your questions to Elara")).to_be_visible()
    results = page.get_by_role("region", name="Questions found")
    expect(results.get_by_role("link", name="Why are there two high tides every day?")).to_be_visible()
    with page.expect_response(lambda r: "/tutor/history?" in r.url and "q=tides" in r.url):
        search(page, "tides")
    item = results.locator(".tutor-history-item")
    expect(item).to_have_count(1)
    expect(item.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(item.locator(".tutor-kind")).to_have_text("Answer")

    # And back to the whole conversation, at the answer.
    item.get_by_role("link", name="Why are there two high tides every day?").click()
    expect(page.get_by_role("heading", name="Ask Elara", level=1)).to_be_visible()
    expect(page.get_by_role("log", name="Messages").locator(".tutor-bubble")).to_have_count(2)
