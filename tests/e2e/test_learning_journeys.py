"""The learning area's journeys, in a real browser with htmx running: a student finds a course,
studies a lesson and takes a timed quiz; a faculty member grades with a rubric and releases the
grade; anyone checks a certificate; a faculty member writes and publishes a course.

The courses, quizzes, assignments and certificates the journeys start from are built through
the learning services (as the course's faculty member, in a block that commits): e2e rows are
not rolled back, so every title, slug and address is unique to the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from portal.db.base import utcnow
from portal.learning.assessment import services as quizzes
from portal.learning.education import authoring
from portal.learning.education import services as education
from portal.learning.lms import assignments, certificates
from tests.e2e.helpers import address, log_in, search, unique_word
from tests.factories import create_user

pytestmark = pytest.mark.e2e


def _mark_page(page: Page) -> None:
    """A mark on the window survives an htmx swap but not a page load."""
    page.evaluate("() => { window.__samePage = true; }")


def _same_page(page: Page) -> bool:
    return page.evaluate("() => window.__samePage === true")


def _published_course(faculty, title: str, lessons: list[str], *, category: str = "Marine science"):
    """A published course of ``faculty`` with one module holding ``lessons``."""
    course = authoring.create_course(faculty, title=title, summary=f"A short course on {title.lower()}.",
                                     category=category, level="beginner", estimated_hours=2,
                                     requires_all_lessons=True)
    module = authoring.add_module(faculty, course.id, title="Getting started")
    for lesson_title in lessons:
        authoring.add_lesson(faculty, module.id, title=lesson_title,
                             body=f"# {lesson_title}\n\nRead this **carefully**.", estimated_minutes=10)
    authoring.change_status(faculty, course.id, "published")
    return course, module


# ------------------------------------------------------------------ a) study and a timed quiz


@dataclass
class QuizCourse:
    student_email: str
    title: str
    token: str
    quiz_title: str
    right_choice: str
    wrong_statement_answer: str


@pytest.fixture
def quiz_course(db_as_tests) -> QuizCourse:
    token = unique_word()
    title = f"Tidepool Ecology {token}"
    with db_as_tests():
        faculty = create_user("faculty", full_name="Efua Asante", email=address("efua"))
        student = create_user("student", full_name="Jomo Kariuki", email=address("jomo"))
        course, module = _published_course(faculty, title, ["Reading the tides", "Life in the pools"])
        quiz = quizzes.create_quiz(faculty, course.id, quizzes.QuizSettings(
            title="Tides check", module_id=module.id, time_limit_minutes=10, passing_percent=60))
        quizzes.add_question(faculty, quiz.id, quizzes.QuestionInput(
            kind="single", prompt="What mostly drives the tides?", points=2,
            options=[quizzes.OptionInput("The Moon", is_correct=True), quizzes.OptionInput("The wind")]))
        quizzes.add_question(faculty, quiz.id, quizzes.QuestionInput(
            kind="true_false", prompt="There are two high tides a day almost everywhere.", points=1,
            options=[quizzes.OptionInput("True", is_correct=True), quizzes.OptionInput("False")]))
        quizzes.set_published(faculty, quiz.id, True)
        # A second module, locked until the first is passed: the course page shows it (and its
        # lesson's minutes) quieter, which must still be readable (axe checks the contrast).
        later = authoring.add_module(faculty, course.id, title="Deeper pools", requires_previous=True)
        authoring.add_lesson(faculty, later.id, title="Night at the shore", body="# Night\n\nLater.",
                             estimated_minutes=15)
        return QuizCourse(student.email, title, token, quiz.title, "The Moon", "False")


def test_student_enrols_studies_a_lesson_and_takes_the_timed_quiz(page, quiz_course):
    data = quiz_course
    log_in(page, data.student_email, "Jomo")

    # Find the course with the live search, which filters as one types.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Learning").click()
    expect(page.get_by_role("heading", name="Course catalog")).to_be_visible()
    with page.expect_response(lambda r: "/learning/courses?" in r.url and data.token in r.url) as answer:
        search(page, f"tidepool {data.token}")
    assert answer.value.request.headers.get("hx-request") == "true"
    results = page.get_by_role("region", name="Courses found")
    expect(results.get_by_role("article")).to_have_count(1)
    expect(results).to_contain_text("1 course")
    results.get_by_role("link", name=data.title).click()

    expect(page.get_by_role("heading", name=data.title, level=1)).to_be_visible()
    _mark_page(page)
    page.get_by_role("button", name="Enrol in this course").click()
    panel = page.get_by_role("complementary", name="Your enrolment")
    expect(panel).to_contain_text("You are enrolled. Welcome to the course!")
    expect(panel.locator(".progress-label")).to_contain_text("0% · 0 of 3 lessons completed")
    expect(page.locator(".outline-module.is-locked")).to_contain_text("15 min")
    assert _same_page(page)

    panel.get_by_role("button", name="Start the first lesson").click()
    expect(page.get_by_role("heading", name="Reading the tides", level=1)).to_be_visible()
    progress = page.locator("#course-progress")
    expect(progress.get_by_role("progressbar", name="Course progress")).to_have_attribute("value", "0")
    _mark_page(page)
    page.get_by_role("button", name="Mark complete").click()
    expect(page.locator("#lesson-complete")).to_contain_text("You have completed this lesson.")
    # The progress bar reloads itself on the event the answer fires.
    expect(progress.locator(".progress-label")).to_contain_text("33% · 1 of 3 lessons completed")
    expect(progress.get_by_role("progressbar", name="Course progress")).to_have_attribute("value", re.compile(r"^33"))
    assert _same_page(page)

    # The quiz, from the outline beside the lesson.
    page.get_by_role("complementary", name="Course outline").get_by_role(
        "link", name=f"Quiz: {data.quiz_title}").click()
    expect(page.get_by_role("heading", name=data.quiz_title, level=1)).to_be_visible()
    expect(page.locator(".quiz-rules")).to_contain_text("10 minutes")
    page.get_by_role("button", name="Start attempt").click()

    expect(page.get_by_text("Attempt 1", exact=True)).to_be_visible()
    countdown = page.locator(".countdown [data-countdown]")
    expect(countdown).to_be_visible()
    # The script replaces the server's "until HH:MM:SS UTC" with the time left, ticking.
    expect(countdown).to_have_text(re.compile(r"^(10:00|9:[0-5]\d)$"))

    first = page.get_by_role("group", name=re.compile(r"^Question 1"))
    second = page.get_by_role("group", name=re.compile(r"^Question 2"))
    with page.expect_response(lambda r: "/answers/" in r.url and r.request.method == "POST") as saved:
        first.get_by_label(data.right_choice).check()
    assert saved.value.ok and saved.value.request.headers.get("hx-request") == "true"
    expect(first.get_by_role("status")).to_contain_text("Saved")

    # A reload in the middle of the attempt keeps what was answered, and the clock runs on.
    page.reload()
    expect(first.get_by_label(data.right_choice)).to_be_checked()
    expect(first.get_by_label("The wind")).not_to_be_checked()
    expect(first.get_by_role("status")).to_contain_text("Saved")
    expect(countdown).to_have_text(re.compile(r"^(10:00|9:[0-5]\d)$"))

    with page.expect_response(lambda r: "/answers/" in r.url and r.request.method == "POST"):
        second.get_by_label(data.wrong_statement_answer, exact=True).check()
    expect(second.get_by_role("status")).to_contain_text("Saved")
    page.reload()
    expect(second.get_by_label(data.wrong_statement_answer, exact=True)).to_be_checked()
    expect(first.get_by_label(data.right_choice)).to_be_checked()

    page.get_by_role("button", name="Submit attempt").click()
    expect(page).to_have_url(re.compile(r"/learning/attempts/[0-9a-f-]+/result$"))
    expect(page.locator(".flashes")).to_contain_text("Attempt submitted.")
    score = page.locator(".result-score")
    # 2 of 3 points: the choice was right, the statement wrong; 60% passes.
    expect(score).to_contain_text("66.7%")
    expect(score).to_contain_text("2 of 3 points")
    expect(score).to_contain_text("Passed")
    expect(score).to_have_class(re.compile(r"\bis-pass\b"))


# ------------------------------------------------------------------ b) rubric grading and release


@dataclass
class GradingCase:
    faculty_email: str
    student_email: str
    assignment_title: str
    assignment_id: str
    course_id: str


@pytest.fixture
def grading_case(db_as_tests) -> GradingCase:
    token = unique_word()
    with db_as_tests():
        faculty = create_user("faculty", full_name="Olu Adeyemi", email=address("olu"))
        student = create_user("student", full_name="Zanele Mokoena", email=address("zanele"))
        course, module = _published_course(faculty, f"Coastal Field Notes {token}", ["Keeping a notebook"])
        assignment = assignments.create_assignment(faculty, course.id, assignments.AssignmentInput(
            title=f"Field report {token}", points=Decimal(10), instructions="Describe one rock pool.",
            due_at=utcnow() + timedelta(days=7), module_id=module.id,
            rubric=[
                {"title": "Observation", "levels": [{"title": "Thorough", "points": 6},
                                                    {"title": "Sketchy", "points": 2}]},
                {"title": "Writing", "levels": [{"title": "Clear", "points": 4},
                                                {"title": "Muddled", "points": 1}]},
            ]))
        assignments.set_published(faculty, assignment.id, True)
        education.enrol(student, course.id)
        assignments.submit(student, assignment.id, text="Pool 3 held two anemones and a shore crab.")
        return GradingCase(faculty.email, student.email, assignment.title, str(assignment.id), str(course.id))


def test_faculty_grades_with_the_rubric_and_releases_and_the_student_sees_the_grade(new_page, grading_case):
    data = grading_case
    page = new_page()
    log_in(page, data.faculty_email, "Olu")

    # The dashboard's "To grade" card loads after the page and leads to the grading screen.
    card = page.locator("#to-grade-card")
    expect(card).to_contain_text("1 waiting")
    card.get_by_role("link", name=data.assignment_title).click()
    expect(page.locator("#grade-panel")).to_contain_text("Zanele Mokoena")
    expect(page.locator(".grader-submission")).to_contain_text("two anemones and a shore crab")
    expect(page.locator(".score-box")).to_contain_text("Not graded yet.")

    _mark_page(page)
    observation = page.get_by_role("group", name="Observation")
    with page.expect_response(lambda r: "/grade" in r.url and r.request.method == "POST") as answer:
        observation.get_by_role("button", name=re.compile(r"^Sketchy")).click()
    assert answer.value.request.headers.get("hx-request") == "true"
    expect(observation.get_by_role("button", name=re.compile(r"^Sketchy"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".score-box")).to_contain_text("2.00")
    expect(page.locator(".score-box")).to_contain_text("Incomplete: choose a level for every criterion")

    writing = page.get_by_role("group", name="Writing")
    writing.get_by_role("button", name=re.compile(r"^Clear")).click()
    expect(writing.get_by_role("button", name=re.compile(r"^Clear"))).to_have_attribute("aria-pressed", "true")
    expect(observation.get_by_role("button", name=re.compile(r"^Sketchy"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".score-box .grade-big")).to_have_text("6.00")
    expect(page.locator(".score-box")).to_contain_text("Ready to release")

    page.get_by_label("Feedback (Markdown)").fill("Good writing. Look **closer** at the pool next time.")
    page.get_by_role("button", name="Save feedback").click()
    expect(page.locator("#grade-panel")).to_contain_text("0 to grade · 1 graded · 0 released")
    expect(page.get_by_label("Feedback (Markdown)")).to_have_value("Good writing. Look **closer** at the pool next time.")
    assert _same_page(page)

    # Release, from the assignment's page; the browser asks for confirmation first.
    page.get_by_role("navigation", name="breadcrumb").get_by_role("link", name=data.assignment_title).click()
    expect(page.get_by_role("heading", name=data.assignment_title, level=1)).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Release grades").click()
    expect(page.locator(".flashes")).to_contain_text("1 grade released to students.")
    expect(page.locator("#submissions tbody tr", has_text="Zanele Mokoena")).to_contain_text("Released")

    student = new_page()
    log_in(student, data.student_email, "Zanele")
    student.get_by_role("link", name="Notifications").click()
    note = student.locator("li.notification", has_text=f"Your grade for “{data.assignment_title}” is out")
    expect(note).to_contain_text("6.00 of 10.00 points.")
    student.goto(f"/learning/assignments/{data.assignment_id}")
    result = student.get_by_role("region", name="Your grade")
    expect(result.locator(".grade-big")).to_contain_text("6.0")
    expect(result.locator(".grade-big")).to_contain_text("/ 10.0")
    expect(result.locator(".rubric-cell.chosen")).to_have_count(2)
    expect(result.locator(".prose strong")).to_have_text("closer")
    expect(result).to_contain_text("Good writing.")

    # The gradebook export, streamed by a real server after the view has returned, still reads
    # the rows as the faculty member (row-level security would otherwise hide every student).
    export = page.request.get(f"/learning/courses/{data.course_id}/gradebook.csv")
    assert export.status == 200 and export.headers["content-type"].startswith("text/csv")
    lines = export.text().splitlines()
    assert len(lines) == 2 and "Zanele Mokoena" in lines[1] and "6" in lines[1], lines


# ------------------------------------------------------------------ c) public certificate check


@pytest.fixture
def certificate_code(db_as_tests) -> tuple[str, str, str]:
    token = unique_word()
    with db_as_tests():
        faculty = create_user("faculty", full_name="Ama Owusu", email=address("ama"))
        student = create_user("student", full_name="Kwame Nkrumah Mensah", email=address("kwame"))
        course, _module = _published_course(faculty, f"Reef Survey Methods {token}", ["Transects"])
        certificate = certificates.issue_certificate(student, course)
        return certificate.code, student.full_name, course.title


def test_anyone_verifies_a_certificate_by_its_code_and_downloads_the_pdf(page, certificate_code):
    code, holder, course_title = certificate_code
    page.goto("/learning/certificates/verify")
    expect(page.get_by_role("heading", name="Verify a certificate")).to_be_visible()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()  # nobody is logged in

    # An unknown code is explained in place.
    page.get_by_label("Certificate code").fill("nosuchcode123")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Certificate code")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Certificate code").fill(code)
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(rf"/learning/certificates/{re.escape(code)}$"))
    expect(page.get_by_role("heading", name=course_title, level=1)).to_be_visible()
    expect(page.locator(".verdict")).to_contain_text("Valid.")
    expect(page.locator(".verdict")).to_have_class(re.compile(r"\bverdict-good\b"))
    expect(page.locator(".certificate-holder")).to_contain_text(holder)
    expect(page.locator(".check-list .check-fail")).to_have_count(0)
    expect(page.locator(".check-list .check-pass")).to_have_count(3)

    link = page.get_by_role("button", name="Download PDF")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"certificate-{code}.pdf"
    with open(download.value.path(), "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"
    answer = page.request.get(link.get_attribute("href"))
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/pdf"


# ------------------------------------------------------------------ d) write and publish a course


def test_faculty_writes_a_course_with_the_live_preview_and_publishes_it(page, db_as_tests):
    token = unique_word()
    title = f"Mangrove Restoration {token}"
    with db_as_tests():
        faculty = create_user("faculty", full_name="Thandiwe Ndlovu", email=address("thandiwe"))
        email = faculty.email
    log_in(page, email, "Thandiwe")

    page.get_by_role("article").filter(has=page.get_by_role("heading", name="Courses I teach")).get_by_role(
        "button", name="New course").click()
    expect(page.get_by_role("heading", name="New course")).to_be_visible()
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_label("Summary").fill("Plant, protect and monitor mangroves.")
    page.get_by_label("Category").fill("Marine science")
    page.get_by_label("Level").select_option("intermediate")
    page.get_by_label("Estimated hours").fill("3")
    page.get_by_role("button", name="Create course").click()

    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    expect(page.locator(".flashes")).to_contain_text(f"Course \"{title}\" created as a draft")
    expect(page.locator("#status-bar")).to_contain_text("Draft")

    _mark_page(page)
    page.get_by_label("Module title").fill("Why mangroves matter")
    page.get_by_role("button", name="Add module").click()
    module = page.locator(".mg-module-card", has_text="Why mangroves matter")
    expect(module).to_contain_text("No lessons in this module yet.")
    assert _same_page(page)

    module.get_by_role("button", name="Add a lesson").click()
    expect(page.get_by_role("heading", name="New lesson in module 1")).to_be_visible()
    page.get_by_label("Lesson title").fill("Roots that hold the coast")
    preview = page.locator("#lesson-preview")
    expect(preview).to_contain_text("The preview appears here as you type.")
    with page.expect_response(lambda r: r.url.endswith("/learning/manage/preview")) as answer:
        page.get_by_label("Lesson text (Markdown)").fill(
            "## Prop roots\n\nThey **slow the waves** and trap silt.\n\n- shelter\n- nurseries")
    assert answer.value.request.headers.get("hx-request") == "true"
    expect(preview.get_by_role("heading", name="Prop roots")).to_be_visible()
    expect(preview.locator("strong")).to_have_text("slow the waves")
    expect(preview.get_by_role("listitem")).to_have_count(2)
    page.get_by_role("button", name="Add lesson").click()

    expect(page.locator(".flashes")).to_contain_text("Lesson \"Roots that hold the coast\" added.")
    expect(page.locator(".mg-lesson-row", has_text="Roots that hold the coast")).to_contain_text("1.1")

    _mark_page(page)
    page.locator("#status-bar").get_by_role("button", name="Publish").click()
    status = page.locator("#status-bar")
    expect(status).to_contain_text("Published: students can find and enrol in the course.")
    expect(status.locator(".status")).to_have_text("Published")
    assert _same_page(page)

    # The course is now in the catalog, and opens with its lesson in the outline.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Learning").click()
    expect(page.get_by_role("heading", name="Course catalog")).to_be_visible()
    with page.expect_response(lambda r: "/learning/courses?" in r.url and token in r.url):
        search(page, token)
    results = page.get_by_role("region", name="Courses found")
    expect(results.get_by_role("article")).to_have_count(1)
    results.get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    expect(page.locator(".course-outline")).to_contain_text("Roots that hold the coast")
    expect(page.locator(".course-facts")).to_contain_text("Thandiwe Ndlovu")
