"""The payment journeys, in a real browser against the real sandbox payment provider
(``sandbox_psp`` in conftest: its hosted pages, its challenge step and its signed webhooks to the
live server): a student tops up with a card that asks for the challenge and watches a payment
change state by itself; a declined card says why and credits nothing; a student buys a course a
faculty member priced and gets the money back; a student saves a card, pays with it again
without the hosted page, and removes it.

Each journey is a new student (and a new course), made through the services and committed. Work
the provider does later (mobile money, refunds) is settled with its test helper, and its
webhooks are waited for by polling its delivery log, never with a fixed sleep.

A card that passes the challenge is final when the payer comes back (the portal asks the
provider on the return), so the live change of state is shown with mobile money, which the
provider confirms later.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from portal.learning.education import authoring
from tests.e2e.helpers import address, log_in
from tests.factories import create_user
from tests.money.payments.sandbox_server import FUTURE_EXPIRY

pytestmark = pytest.mark.e2e

CHALLENGE_CARD = "4000002760003184"
INSUFFICIENT_FUNDS_CARD = "4000000000009995"
GOOD_CARD = "4242424242424242"
PHONE = "+254712345678"
#: How long a live update may take: the page polls every 2 seconds.
LIVE_MS = 10_000


def _delivered(sandbox, timeout: float = 10.0) -> None:
    """Wait until the sandbox has delivered every webhook it has to send (each answered 2xx by
    the portal). A delivery the portal refused (4xx, or retries exhausted) fails the journey with
    the portal's answer; a 5xx is a "try again later" the sandbox retries within the wait."""
    sandbox.ok("POST", "/v1/test_helpers/webhooks/flush", {})
    deadline = time.monotonic() + timeout
    while True:
        waiting = [d for d in sandbox.ok("GET", "/v1/webhook_deliveries")["data"] if d["state"] != "delivered"]
        if not waiting:
            return
        refused = [d for d in waiting if 400 <= (d["last_status"] or 0) < 500 or d["state"] == "failed"]
        if refused or time.monotonic() > deadline:
            raise AssertionError(f"Webhooks not delivered to the portal: {refused or waiting}")
        time.sleep(0.05)


def _settle(sandbox) -> None:
    """The provider settles its pending mobile money payments and refunds now, and the portal
    has heard about them."""
    sandbox.settle()
    _delivered(sandbox)


def _student(db_as_tests, first: str, last: str) -> str:
    with db_as_tests():
        return create_user("student", full_name=f"{first} {last}", email=address(first.lower())).email


def _open_wallet_tab(page: Page, tab: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Wallet").click()
    expect(page.get_by_role("heading", name="Wallet", level=1)).to_be_visible()
    page.get_by_role("navigation", name="Wallet").get_by_role("link", name=tab, exact=True).click()


def _balance(page: Page, code: str):
    """The balance card of ``code`` on the wallet's Balances tab."""
    _open_wallet_tab(page, "Balances")
    return page.locator(".balance-card", has=page.locator(".balance-code", has_text=code))


def _start_top_up(page: Page, amount: str, pay_with: str | re.Pattern, *, save: bool = False) -> None:
    """Fill the top-up form and continue to the payment."""
    _open_wallet_tab(page, "Top up")
    expect(page.get_by_role("heading", name="Add money to your wallet")).to_be_visible()
    page.get_by_label("Amount").fill(amount)
    page.get_by_label("Currency").select_option("USD")
    page.get_by_role("group", name="Pay with").get_by_label(pay_with).check()
    if save:
        page.get_by_label("Save it for later payments").check()
    page.get_by_role("button", name="Continue to payment").click()


def _pay_by_card(page: Page, number: str, amount: str, *, name: str) -> None:
    """On the provider's hosted card page (not the portal's): type the card and pay."""
    expect(page.get_by_role("heading", name="Pay with a card")).to_be_visible()
    expect(page).not_to_have_url(re.compile(r"/wallet/"))
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry date").fill(FUTURE_EXPIRY)
    page.get_by_label("Security code").fill("123")
    page.get_by_label("Name on the card").fill(name)
    page.get_by_role("button", name=f"Pay {amount} USD").click()


def _available(page: Page, text: str):
    """The Balances tab shows ``text`` (like "25.00 USD") available in its currency's card."""
    code = text.split()[-1]
    card = _balance(page, code)
    expect(card.locator(".balance-available")).to_have_text(re.compile(rf"^\s*Available:\s*{re.escape(text)}\s*$"))


def _payment_state(page: Page):
    return page.locator("#payment-state")


# ------------------------------------------------------------------------------ journeys


def test_a_student_tops_up_with_a_card_that_asks_for_the_challenge_and_sees_the_balance(
        new_page, db_as_tests, sandbox_psp):
    email = _student(db_as_tests, "Lina", "Haddad")
    page = new_page()
    log_in(page, email, "Lina")

    _start_top_up(page, "25.00", "Card")
    _pay_by_card(page, CHALLENGE_CARD, "25.00", name="Lina Haddad")

    # The bank's verification step, on the provider's side.
    expect(page.get_by_role("heading", name="Verify this payment")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("card ending 3184")
    page.get_by_role("button", name="Approve the payment").click()

    # Back on the portal, on the payment's page.
    expect(page.get_by_role("heading", name="Top-up of 25.00 USD", level=1)).to_be_visible()
    expect(_payment_state(page)).to_contain_text("Succeeded")
    expect(_payment_state(page)).to_contain_text("25.00 USD was added to your wallet.")
    facts = page.locator(".w-facts")
    expect(facts).to_contain_text("3184")
    expect(facts.locator("dd.total")).to_have_text("25.00 USD")

    _available(page, "25.00 USD")

    # Mobile money confirms later: the payment's page says "Processing" and turns to
    # "Succeeded" by itself (no reload: the marker set on this document survives).
    _start_top_up(page, "10", "Mobile money")
    expect(page.get_by_role("heading", name="Pay with mobile money")).to_be_visible()
    page.get_by_label("Phone number").fill(PHONE)
    page.get_by_label("Network").select_option(index=1)
    page.get_by_role("button", name="Pay 10.00 USD").click()
    expect(page.get_by_role("heading", name="Top-up of 10.00 USD", level=1)).to_be_visible()
    expect(_payment_state(page)).to_contain_text("Processing")
    expect(_payment_state(page)).to_contain_text("This page updates by itself")
    page.evaluate("window.__sameDocument = true")
    _settle(sandbox_psp)
    expect(_payment_state(page)).to_contain_text("Succeeded", timeout=LIVE_MS)
    expect(_payment_state(page)).to_contain_text("10.00 USD was added to your wallet.")
    assert page.evaluate("window.__sameDocument === true"), "the payment's page was reloaded"

    _available(page, "35.00 USD")


def test_a_declined_card_says_why_credits_nothing_and_a_good_card_then_pays(new_page, db_as_tests, sandbox_psp):
    email = _student(db_as_tests, "Omar", "Said")
    page = new_page()
    log_in(page, email, "Omar")

    _start_top_up(page, "40", "Card")
    _pay_by_card(page, INSUFFICIENT_FUNDS_CARD, "40.00", name="Omar Said")
    # The provider's page says why and lets the payer try again.
    expect(page.get_by_role("alert")).to_have_text("The card has insufficient funds. Try another card.")
    expect(page.get_by_role("button", name="Pay 40.00 USD")).to_be_visible()

    # The student goes back to the portal without paying: the payment says why, nothing was
    # credited, and the list shows it unpaid.
    page.get_by_role("link", name="Back to the merchant without paying").click()
    expect(page.get_by_role("heading", name="Top-up of 40.00 USD", level=1)).to_be_visible()
    expect(_payment_state(page)).to_contain_text(
        "The last attempt did not go through. The card has insufficient funds. Try another card.")
    _available(page, "0.00 USD")
    _open_wallet_tab(page, "Payments")
    row = page.locator("tr", has_text="40.00 USD").first
    expect(row).to_contain_text("Not paid yet")
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Top-up of 40.00 USD", level=1)).to_be_visible()
    expect(_payment_state(page)).to_contain_text("Not paid yet")

    # The same payment, with another card.
    page.get_by_role("button", name="Continue to the payment page").click()
    expect(page.get_by_role("alert")).to_contain_text("insufficient funds")
    _pay_by_card(page, GOOD_CARD, "40.00", name="Omar Said")
    expect(page.get_by_role("heading", name="Top-up of 40.00 USD", level=1)).to_be_visible()
    expect(_payment_state(page)).to_contain_text("Succeeded")
    expect(_payment_state(page)).to_contain_text("40.00 USD was added to your wallet.")
    _available(page, "40.00 USD")


@pytest.fixture
def priced_course(db_as_tests):
    """A published free course of a new faculty member (the journey prices it)."""
    with db_as_tests():
        faculty = create_user("faculty", full_name="Grace Mwangi", email=address("grace"))
        title = f"Budgeting Basics {uuid.uuid4().hex[:6]}"
        course = authoring.create_course(faculty, title=title, summary="Plan a month of money.", category="Finance",
                                         level="beginner", estimated_hours=1, requires_all_lessons=True)
        module = authoring.add_module(faculty, course.id, title="The plan")
        authoring.add_lesson(faculty, module.id, title="Where the money goes", body="# Track it", estimated_minutes=5)
        authoring.add_lesson(faculty, module.id, title="A month ahead", body="# Plan it", estimated_minutes=5)
        authoring.change_status(faculty, course.id, "published")
        return {"faculty": faculty.email, "title": title, "slug": course.slug, "id": str(course.id)}


def test_a_student_buys_a_priced_course_by_card_and_gets_a_refund(new_page, db_as_tests, sandbox_psp, priced_course):
    # The faculty member prices the course in the course editor.
    teacher = new_page()
    log_in(teacher, priced_course["faculty"], "Grace")
    teacher.goto(f"/learning/manage/{priced_course['id']}/settings")
    price = teacher.get_by_role("group", name="Price")
    price.get_by_label("Amount").fill("19.00")
    price.get_by_label("Currency").select_option("USD")
    teacher.get_by_role("button", name=re.compile("^Save")).click()
    expect(teacher.get_by_text("Settings saved.")).to_be_visible()

    email = _student(db_as_tests, "Ayo", "Bello")
    page = new_page()
    log_in(page, email, "Ayo")
    page.goto(f"/learning/courses/{priced_course['slug']}")
    expect(page.locator(".course-price")).to_contain_text("19.00 USD")
    page.get_by_role("button", name="Buy this course").click()

    expect(page.get_by_role("heading", name=f"Buy {priced_course['title']}")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Not enough: 19.00 USD short.")
    page.get_by_role("group", name="Pay with").get_by_label("Card").check()
    page.get_by_role("button", name="Pay 19.00 USD").click()
    _pay_by_card(page, GOOD_CARD, "19.00", name="Ayo Bello")

    # Enrolled, on the course.
    expect(page).to_have_url(re.compile(re.escape(f"/learning/courses/{priced_course['slug']}")))
    expect(page.get_by_role("main")).to_contain_text(f"you are enrolled in {priced_course['title']}")
    expect(page.get_by_role("button", name="Buy this course")).to_have_count(0)
    expect(page.get_by_role("button", name="Leave the course")).to_be_visible()

    # The refund, from the payment's page: approved at once (no progress, bought today).
    _open_wallet_tab(page, "Payments")
    page.locator("tr", has_text="19.00 USD").first.get_by_role("link").first.click()
    expect(_payment_state(page)).to_contain_text("Paid. You are enrolled in the course.")
    page.get_by_role("button", name="Ask for a refund").click()
    expect(page.get_by_role("heading", name="Ask for a refund")).to_be_visible()
    expect(page.locator(".w-facts dd.total")).to_have_text("19.00 USD")
    expect(page.get_by_role("main")).to_contain_text(
        "the money comes back at once: you bought it today and completed 0% of it.")
    page.get_by_label("Why do you want a refund?").fill("I picked the wrong course.")
    page.get_by_role("button", name="Ask for the refund").click()
    expect(page.get_by_role("main")).to_contain_text("Refund approved: 19.00 USD is on its way back")
    refunds = page.locator(".refund-list")
    expect(refunds).to_contain_text("Approved, being returned")
    expect(refunds).to_contain_text("approved at once by the refund rule")

    # The provider settles the refund to the card.
    _settle(sandbox_psp)
    page.reload()
    expect(refunds).to_contain_text("Refunded")
    expect(_payment_state(page)).to_contain_text("Paid, then refunded in full.")
    expect(page.locator(".w-facts")).to_contain_text(re.compile(r"Refunded\s*19\.00 USD"))
    # Back to the card: the wallet got it and sent it on, holding nothing.
    _available(page, "0.00 USD")
    page.goto("/wallet/payments")  # a full load: the list as it is now, whatever the page before left running
    row = page.locator("#payment-rows tr", has_text="19.00 USD").first
    expect(row).to_contain_text("19.00 USD refunded")
    row.get_by_role("link").first.click()
    expect(_payment_state(page)).to_contain_text("Paid, then refunded in full.")

    # The course is no longer theirs: it is for sale again.
    page.get_by_role("link", name=priced_course["title"]).first.click()
    expect(page.get_by_role("button", name="Buy this course")).to_be_visible()
    expect(page.get_by_role("button", name="Leave the course")).to_have_count(0)


def test_a_student_saves_a_card_pays_with_it_again_and_removes_it(new_page, db_as_tests, sandbox_psp):
    email = _student(db_as_tests, "Mei", "Tanaka")
    page = new_page()
    log_in(page, email, "Mei")

    _start_top_up(page, "20", "Card", save=True)
    expect(page.get_by_label("Save this card for later payments")).to_be_checked()
    _pay_by_card(page, GOOD_CARD, "20.00", name="Mei Tanaka")
    expect(_payment_state(page)).to_contain_text("20.00 USD was added to your wallet.")

    _open_wallet_tab(page, "Payment methods")
    method = page.locator(".method-item")
    expect(method).to_have_count(1)
    expect(method).to_contain_text("Visa")
    expect(method).to_contain_text("4242")
    expect(method).to_contain_text("Default")

    # Paid with the saved card, offered first: charged at once, no provider page.
    _open_wallet_tab(page, "Top up")
    expect(page.get_by_role("group", name="Pay with").get_by_label(re.compile(r"Visa.*4242"))).to_be_checked()
    _start_top_up(page, "15", re.compile(r"Visa.*4242"))
    expect(page.get_by_role("heading", name="Top-up of 15.00 USD", level=1)).to_be_visible()
    expect(_payment_state(page)).to_contain_text("15.00 USD was added to your wallet.")
    expect(page.locator(".w-facts")).to_contain_text("4242")
    _available(page, "35.00 USD")

    _open_wallet_tab(page, "Payment methods")
    page.once("dialog", lambda dialog: dialog.accept())  # "Remove Visa ending 4242? ..."
    page.get_by_role("button", name=re.compile(r"^Remove")).click()
    expect(page.get_by_role("status")).to_have_text("Payment method removed.")
    expect(page.locator(".method-item")).to_have_count(0)
    expect(page.get_by_text("No saved payment method.")).to_be_visible()

    # The next top-up no longer offers it.
    _open_wallet_tab(page, "Top up")
    expect(page.get_by_role("group", name="Pay with").get_by_label(re.compile("4242"))).to_have_count(0)
