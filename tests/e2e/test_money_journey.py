"""The money journey, in a real browser with htmx running: a student passes a quiz and earns the
reward a milestone pays, sends part of it to another student, converts some to USD and asks for
a withdrawal, which an admin approves.

The course, quiz, milestone, exchange rate and people are made through the services and models
(committed: e2e rows are not rolled back), each unique to the run.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment import services as quizzes
from portal.learning.education import authoring
from portal.learning.education import services as education
from portal.money.earnings.models import Milestone, MilestoneKind
from portal.money.exchange.models import CurrencyPair, ExchangeRate, RateSource
from tests.e2e.helpers import address, log_in
from tests.factories import create_user

pytestmark = pytest.mark.e2e

PHONE = "+233241234567"


def _fresh_azr_usd_rate(rate: Decimal) -> None:
    """AZR/USD at ``rate``, observed now, so the quote uses it whatever else the run left."""
    from sqlalchemy import select

    pair = db.session.scalar(select(CurrencyPair).where(CurrencyPair.base_currency == "AZR",
                                                        CurrencyPair.quote_currency == "USD"))
    if pair is None:
        pair = CurrencyPair(base_currency="AZR", quote_currency="USD")
        db.session.add(pair)
        db.session.flush()
    pair.active = True
    # Every source of the pair gets the rate, so the source preference cannot pick another one.
    for source in RateSource:
        db.session.add(ExchangeRate(pair_id=pair.id, rate=rate, source=source, source_detail="e2e",
                                    observed_at=utcnow()))


@pytest.fixture
def money_case(db_as_tests):
    with db_as_tests():
        admin = create_user("admin", full_name="Amara Okafor", email=address("amara"))
        faculty = create_user("faculty", full_name="Kwame Mensah", email=address("kwame"))
        student = create_user("student", full_name="Nia Achieng", email=address("nia"))
        friend = create_user("student", full_name="Tomas Berg", email=address("tomas"))
        course = authoring.create_course(faculty, title=f"Saving Basics {uuid.uuid4().hex[:6]}",
                                         summary="Saving, simply.", category="Finance", level="beginner",
                                         estimated_hours=1, requires_all_lessons=True)
        module = authoring.add_module(faculty, course.id, title="First steps")
        authoring.add_lesson(faculty, module.id, title="Pay yourself first", body="# Save first", estimated_minutes=5)
        authoring.change_status(faculty, course.id, "published")
        quiz = quizzes.create_quiz(faculty, course.id, quizzes.QuizSettings(
            title="Saving check", module_id=module.id, time_limit_minutes=10, passing_percent=60))
        quizzes.add_question(faculty, quiz.id, quizzes.QuestionInput(
            kind="single", prompt="When should you save?", points=1,
            options=[quizzes.OptionInput("Before spending", is_correct=True), quizzes.OptionInput("Never")]))
        quizzes.set_published(faculty, quiz.id, True)
        education.enrol(student, course.id)
        db.session.add(Milestone(title="Pass the saving check", kind=MilestoneKind.QUIZ_PASSED, quiz_id=quiz.id,
                                 course_id=course.id, min_score=Decimal(80), reward_amount=Decimal(20),
                                 reward_currency="AZR", created_by_id=admin.id))
        _fresh_azr_usd_rate(Decimal("0.5"))
        try:
            from tests.compliance.factories import verify  # withdrawals need identity verification
        except ImportError:
            verify = None
        if verify is not None:
            verify(student, 2)
        case = {"admin": admin.email, "student": student.email, "friend": friend.email, "quiz_id": str(quiz.id)}
    yield case
    # The pair is shared by every test of the run's database: take it away again (its rates go
    # with it; the conversion keeps its rate and source as text).
    from sqlalchemy import delete

    with db_as_tests():
        db.session.execute(delete(CurrencyPair).where(CurrencyPair.base_currency == "AZR",
                                                      CurrencyPair.quote_currency == "USD"))


def test_a_student_earns_sends_converts_and_withdraws_and_an_admin_approves(new_page, money_case):
    page = new_page()
    log_in(page, money_case["student"], "Nia")

    # Pass the quiz: the milestone pays 20 AZR at once.
    page.goto(f"/learning/quizzes/{money_case['quiz_id']}")
    page.get_by_role("button", name="Start attempt").click()
    question = page.get_by_role("group", name=re.compile(r"^Question 1"))
    with page.expect_response(lambda r: "/answers/" in r.url and r.request.method == "POST"):
        question.get_by_label("Before spending").check()
    page.get_by_role("button", name="Submit attempt").click()
    expect(page.locator(".result-score")).to_contain_text("Passed")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Wallet").click()
    expect(page.get_by_role("heading", name="Wallet", level=1)).to_be_visible()
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name="Earnings").click()
    # The wallet page lists the reward too: wait for the earnings page itself before going on,
    # or the next click could land on the page being replaced.
    expect(page.get_by_role("heading", name="My earnings", level=1)).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Pass the saving check")
    expect(page.get_by_role("main")).to_contain_text("20.00 AZR")

    # Send 5 AZR to a friend: the live preview, the review, then the receipt.
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name="Send money").click()
    page.get_by_label("Recipient's e-mail").fill(money_case["friend"])
    page.get_by_label("Currency").select_option("AZR")
    with page.expect_response(lambda r: "/wallet/send/preview" in r.url):
        page.get_by_label("Amount").fill("5")
    expect(page.locator("main")).to_contain_text("Tomas Berg")
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name=re.compile(r"^Send 5")).click()
    expect(page.get_by_role("heading", name="Money sent")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("5.00 AZR")
    page.get_by_role("button", name="Back to my wallet").click()
    expect(page.get_by_role("heading", name="Wallet", level=1)).to_be_visible()

    # Convert 10 AZR to USD at the quoted rate (0.5): 5.00 USD.
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name="Convert").click()
    page.locator("#from_currency").select_option("AZR")
    page.locator("#to_currency").select_option("USD")
    page.get_by_label("Amount to convert").fill("10")
    page.get_by_role("button", name="Get quote").click()
    expect(page.get_by_role("main")).to_contain_text("5.00 USD")
    page.get_by_role("button", name="Accept and convert").click()
    expect(page.get_by_role("heading", name="Conversion done")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Wallet").click()
    expect(page.get_by_role("heading", name="Wallet", level=1)).to_be_visible()

    # Ask to withdraw 2 USD to mobile money: held at once, pending.
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name="Withdrawals").click()
    page.get_by_role("button", name="New withdrawal").click()
    page.get_by_label("Currency").select_option("USD")
    page.get_by_label("Paid to").select_option("mobile_money")
    page.get_by_label("Destination").fill(PHONE)
    page.get_by_label("Amount").fill("2")
    page.get_by_role("button", name="Review withdrawal").click()
    page.get_by_role("button", name=re.compile(r"^Confirm and hold")).click()
    expect(page.get_by_role("main")).to_contain_text("Pending")

    # The admin approves it from the queue, inline.
    admin = new_page()
    log_in(admin, money_case["admin"], "Amara")
    admin.goto("/wallet/admin/withdrawals")
    row = admin.locator("tr", has_text="Nia Achieng").first
    admin.once("dialog", lambda dialog: dialog.accept())  # "Pay out 2.00 USD to ...?"
    row.get_by_role("button", name="Approve").click()
    expect(admin.locator("tr", has_text="Nia Achieng").first).to_contain_text("Approved")

    page.reload()
    expect(page.get_by_role("main")).to_contain_text("Approved")
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name="Balances").click()
    # 20 earned - 5 sent - 10 converted (no fee rules in the test database) = 5 AZR; 5 - 2 USD = 3 USD.
    expect(page.get_by_role("main")).to_contain_text("5.00 AZR")
    expect(page.get_by_role("main")).to_contain_text("3.00 USD")
