"""Analytics journeys in a real browser: an admin brings the figures up to date, reads the
dashboard and downloads one chart's data as CSV; a teacher opens their course's analytics and
finds the quiz question that discriminates worst.

Rows are committed (e2e rows are not rolled back): every name is unique to the run, and the
figures checked are the ones these rows make (the CSV agrees with the page, the enrolments of
today include the four made here)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from portal.db.base import utcnow
from tests.e2e.helpers import address, log_in, wait_for_htmx
from tests.factories import create_user
from tests.platform.analytics.test_item_analysis import _quiz_of_the_example

pytestmark = pytest.mark.e2e


@dataclass
class Analytics:
    admin_email: str
    teacher_email: str
    course_id: str
    quiz_title: str


@pytest.fixture
def analytics_data(db_as_tests) -> Analytics:
    with db_as_tests():
        admin = create_user("admin", full_name="Amara Admin", email=address("amara"))
        teacher, course, quiz = _quiz_of_the_example()
        return Analytics(admin.email, teacher.email, str(course.id), quiz.title)


def test_admin_reads_the_dashboard_and_exports_a_chart_s_data(page: Page, analytics_data):
    log_in(page, analytics_data.admin_email)
    page.get_by_role("navigation").get_by_role("link", name="Analytics", exact=True).first.click()
    expect(page.get_by_role("heading", name="Analytics", level=1)).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/admin/analytics/refresh")) as refreshed:
        page.get_by_role("button", name="Bring figures up to date").click()
    assert refreshed.value.status in (200, 204, 302)
    page.wait_for_load_state("networkidle")  # the page shown again after the redirect (htmx swaps the body)
    wait_for_htmx(page)
    expect(page.get_by_role("heading", name="Analytics", level=1)).to_be_visible()

    today = utcnow().date().isoformat()
    chart = page.locator("#chart-learning-enrolments")
    expect(chart.locator("svg rect")).to_have_count(30)
    chart.get_by_text("Data table").click()
    today_row = chart.locator("tbody tr").filter(has_text=today).first
    expect(today_row).to_be_visible()
    shown = int(today_row.locator("td").nth(1).inner_text())
    assert shown >= 4  # the four students enrolled for this journey, today

    with page.expect_download() as download:
        chart.get_by_role("link", name="Download CSV: Enrolments").click()
    assert download.value.suggested_filename.startswith("learning-enrolments-")
    with open(download.value.path(), newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["day", "learning.enrolments", "previous_day", "previous_value"]
    assert [row[1] for row in rows if row[0] == today] == [str(shown)]


def test_teacher_finds_the_weakest_quiz_question(page: Page, analytics_data):
    log_in(page, analytics_data.teacher_email)
    page.goto(f"/learning/manage/{analytics_data.course_id}")
    page.get_by_role("navigation", name="Course:").get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Analytics", level=1)).to_be_visible()
    expect(page.locator("select#quiz option:checked")).to_contain_text(analytics_data.quiz_title)
    weakest = page.locator("#weakest")
    expect(weakest).to_contain_text("Weakest question: Q2")
    flagged = page.locator("#item-analysis tr[data-weak='true']")
    expect(flagged).to_have_count(1)
    expect(flagged).to_contain_text("Question 2?")
    expect(flagged).to_contain_text("(check this question)")
    # Choosing the quiz again (htmx) swaps only the analysis, with the same answer.
    with page.expect_response(lambda r: "/analytics?quiz=" in r.url) as swapped:
        page.get_by_role("button", name="Analyse").click()
    assert swapped.value.request.headers.get("hx-request") == "true"
    expect(page.locator("#weakest")).to_contain_text("Weakest question: Q2")
