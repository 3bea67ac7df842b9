"""Faculty pages of one course lead everywhere the course's staff needs to go, and nowhere dead:
every link in the main content of the course editor, and of each page it leads to inside the
learning area, answers 200 (or a download) for the course's owner."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urldefrag, urlsplit

from portal.accounts.models import Role
from portal.learning.assessment.models import QuestionKind
from portal.learning.education.models import CourseStatus
from portal.learning.lms.models import ManagementRole
from tests.learning.factories import assign as fa
from tests.learning.factories import catalog as fc
from tests.learning.factories import quiz as fq


class _MainLinks(HTMLParser):
    """The hrefs of <a> elements inside <main>."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.depth += 1
        elif tag == "a" and self.depth:
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)

    def handle_endtag(self, tag):
        if tag == "main":
            self.depth -= 1


def main_links(html: str) -> list[str]:
    parser = _MainLinks()
    parser.feed(html)
    return parser.links


def _course_with_everything(owner, make_user):
    course = fa.make_course(owner)
    course.status, course.published_at = CourseStatus.DRAFT, None  # staff reach a draft's pages too
    module = fc.make_module(course)
    fc.make_lesson(module)
    quiz = fq.make_quiz(course)
    fq.add_question(quiz, QuestionKind.SINGLE, options=[("Yes", True), ("No", False)])
    assignment = fa.make_assignment(course, rubric=fa.RUBRIC)
    student = make_user(role=Role.STUDENT)
    fa.enroll(course, student)
    fa.make_submission(assignment, student)
    return course, quiz, assignment


def _walk(client, start: str, depth: int = 2) -> dict[str, int]:
    """GET every local link under /learning/ (and the dashboard) reachable from ``start``."""
    seen: dict[str, int] = {}
    frontier = [start]
    for _ in range(depth + 1):
        following = []
        for url in frontier:
            if url in seen:
                continue
            response = client.get(url)
            seen[url] = response.status_code
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            for href in main_links(response.get_data(as_text=True)):
                href = urldefrag(href)[0]
                parts = urlsplit(href)
                if parts.scheme or parts.netloc or not href.startswith("/learning/") or href in seen:
                    continue
                following.append(href)
        frontier = following
    return seen


def test_every_link_from_the_course_editor_works_for_the_owner(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, quiz, assignment = _course_with_everything(owner, make_user)
    seen = _walk(client, f"/learning/manage/{course.id}")
    broken = {url: status for url, status in seen.items() if status != 200}
    assert not broken
    # Everything of the course is among the pages reached.
    expected = [
        f"/learning/courses/{course.id}/quizzes", f"/learning/courses/{course.id}/quizzes/new",
        f"/learning/quizzes/{quiz.id}/edit", f"/learning/quizzes/{quiz.id}/results",
        f"/learning/quizzes/{quiz.id}/grading",
        f"/learning/courses/{course.id}/assignments", f"/learning/courses/{course.id}/assignments/new",
        f"/learning/assignments/{assignment.id}", f"/learning/assignments/{assignment.id}/edit",
        f"/learning/assignments/{assignment.id}/grade",
        f"/learning/courses/{course.id}/gradebook", f"/learning/courses/{course.id}/gradebook.csv",
        f"/learning/manage/{course.id}/staff", f"/learning/manage/{course.id}/settings",
        f"/learning/courses/{course.slug}",
    ]
    missing = [url for url in expected if url not in seen]
    assert not missing


def test_the_gradebook_csv_link_is_a_download(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, _, _ = _course_with_everything(owner, make_user)
    html = client.get(f"/learning/courses/{course.id}/gradebook").get_data(as_text=True)
    assert f"/learning/courses/{course.id}/gradebook.csv" in main_links(html)
    response = client.get(f"/learning/courses/{course.id}/gradebook.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment")


def test_course_navigation_marks_the_current_tab(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, quiz, assignment = _course_with_everything(owner, make_user)
    pages = {
        "Outline": f"/learning/manage/{course.id}",
        "Quizzes": f"/learning/quizzes/{quiz.id}/results",
        "Assignments": f"/learning/assignments/{assignment.id}/grade",
        "Gradebook": f"/learning/courses/{course.id}/gradebook",
        "Staff": f"/learning/manage/{course.id}/staff",
        "Settings": f"/learning/manage/{course.id}/settings",
    }
    for label, url in pages.items():
        html = client.get(url).get_data(as_text=True)
        assert 'class="course-nav"' in html, url
        assert f'aria-current="page">{label}</a>' in html, url


def test_assistants_get_no_settings_tab(client, login_as, make_user):
    owner = make_user(role=Role.FACULTY)
    course, _, _ = _course_with_everything(owner, make_user)
    assistant = login_as(Role.FACULTY)
    fa.add_staff(course, assistant, ManagementRole.ASSISTANT)
    html = client.get(f"/learning/courses/{course.id}/gradebook").get_data(as_text=True)
    assert f"/learning/manage/{course.id}/settings" not in html
    assert f"/learning/courses/{course.id}/quizzes" in html


def test_faculty_dashboard_links_to_each_course_s_pages(client, login_as, make_user):
    owner = login_as(Role.FACULTY)
    course, _, _ = _course_with_everything(owner, make_user)
    links = main_links(client.get("/dashboard").get_data(as_text=True))
    for url in (f"/learning/manage/{course.id}", f"/learning/courses/{course.id}/quizzes",
                f"/learning/courses/{course.id}/assignments", f"/learning/courses/{course.id}/gradebook"):
        assert url in links
