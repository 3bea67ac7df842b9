"""The card journey, in a real browser with htmx running: a verified student creates a virtual
card, reveals it after the password, an admin buys with it at the card terminal (signed network
messages over HTTP to the live portal), the purchase appears on the student's card page without
a reload, the student freezes the card and the next purchase is declined, live too.

The people are made through the factories (committed: e2e rows are not rolled back), each
unique to the run; the student is at identity level 2 through the KYC factories and funded.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.money.cards.simulator import MERCHANTS
from tests.compliance.factories import verify
from tests.e2e.helpers import address, log_in, wait_for_htmx
from tests.factories import PASSWORD, create_user
from tests.money.factories import fund

pytestmark = pytest.mark.e2e

#: Polls every 2 s; a loaded machine gets some slack.
LIVE_MS = 12_000


@pytest.fixture
def card_case(db_as_tests):
    with db_as_tests():
        admin = create_user("admin", full_name="Amara Okafor", email=address("amara-cards"))
        student = create_user("student", full_name="Nia Achieng", email=address("nia-cards"))
        verify(student, 2)
        fund(student, "80.00", "USD")
        return {"admin": admin.email, "student": student.email}


def _buy(terminal, number: str, expiry: str, cvv: str, amount: str, merchant: str) -> None:
    terminal.goto("/wallet/admin/cards/terminal")
    wait_for_htmx(terminal)
    terminal.get_by_label("Authorize a purchase").check()
    terminal.get_by_label("Card number").fill(number)
    terminal.get_by_label("Expiry (MM/YY)").fill(expiry)
    terminal.get_by_label("Security code").fill(cvv)
    terminal.get_by_label("Amount").fill(amount)
    index = next(n for n, m in enumerate(MERCHANTS) if m.name == merchant)
    terminal.get_by_label("Merchant", exact=True).select_option(value=str(index))
    terminal.get_by_role("button", name="Send to the network").click()


def test_a_student_buys_with_a_new_card_and_freezes_it(card_case, new_page):
    student = new_page()
    log_in(student, card_case["student"], "Nia")
    student.goto("/wallet/cards")
    expect(student.get_by_text("You have no card yet.")).to_be_visible()
    student.get_by_role("button", name="Create a card").click()
    new_card = student.locator(".card-item.is-new")
    expect(new_card).to_be_visible()
    expect(student).to_have_url(re.compile(r"/wallet/cards$"))  # swapped in place, no navigation
    new_card.locator(".card-item-meta a").click()
    expect(student.get_by_role("heading", name=re.compile(r"card •••• \d{4}"))).to_be_visible()

    # The number and code, only after the password.
    expect(student.locator(".card-pan")).to_have_count(0)
    wait_for_htmx(student)
    student.get_by_label(re.compile("^Password")).fill("not the password")
    student.get_by_role("button", name="Show card details").click()
    expect(student.get_by_text("Your password is not right.")).to_be_visible()
    wait_for_htmx(student)
    student.get_by_label(re.compile("^Password")).fill(PASSWORD)
    student.get_by_role("button", name="Show card details").click()
    expect(student.locator(".card-pan")).to_be_visible()
    number = student.locator(".card-pan").inner_text().replace(" ", "")
    cvv = student.locator(".card-cvv").inner_text()
    expiry = student.locator(".card-secret dd code").nth(1).inner_text()
    assert re.fullmatch(r"\d{16}", number) and re.fullmatch(r"\d{3}", cvv) and re.fullmatch(r"\d\d/\d\d", expiry)
    student.get_by_role("button", name="Hide").click()
    expect(student.locator(".card-pan")).to_have_count(0)
    # Marks this document: a reload would lose it.
    student.evaluate("() => { window.__stillHere = true; }")

    admin = new_page()
    log_in(admin, card_case["admin"])
    _buy(admin, number, expiry, cvv, "7.50", "Campus Cafe")
    answer = admin.locator("#terminal-answer")
    expect(answer).to_contain_text("Approved")
    expect(answer).to_contain_text("00")

    purchase = student.locator("#card-tx-rows tr.card-tx", has_text="Campus Cafe")
    expect(purchase).to_be_visible(timeout=LIVE_MS)
    expect(purchase).to_contain_text("7.50 USD")
    expect(purchase).to_contain_text("Pending")
    expect(purchase).to_contain_text("Restaurants and cafes")
    expect(student.locator("#card-spending")).to_contain_text("7.50 USD", timeout=LIVE_MS)
    assert student.evaluate("() => window.__stillHere === true")

    student.get_by_role("button", name="Freeze").click()
    expect(student.get_by_role("button", name="Unfreeze")).to_be_visible()
    expect(student.locator("#card-state")).to_contain_text("Frozen")

    _buy(admin, number, expiry, cvv, "3.20", "University Bookstore")
    expect(answer).to_contain_text("Declined")
    expect(answer).to_contain_text("The card is frozen")

    declined = student.locator("#card-tx-rows tr.card-tx", has_text="University Bookstore")
    expect(declined).to_be_visible(timeout=LIVE_MS)
    expect(declined).to_contain_text("Declined")
    expect(declined).to_contain_text("The card is frozen")
    assert student.evaluate("() => window.__stillHere === true")
    # The number was on the page only while revealed.
    assert number not in student.content()
