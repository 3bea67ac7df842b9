"""The loan officers' pages: the queue with assessments, approve / reject / counter-offer with a
reason, four eyes above the threshold, disburse, the book with PAR 1/30/90 and aging buckets,
collections, a loan's page with restructure (history kept) and write-off (confirmed first), the
CSV export; compliance reads without deciding; bad input, every role with and without htmx, and
the statement budget."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from portal.db import db
from portal.db.base import utcnow
from portal.money.currency import format_amount
from portal.money.lending import admin_queries, services
from portal.money.lending.models import LoanEvent, LoanInstalment, LoanState
from portal.money.wallets import ledger
from tests.factories import create_user
from tests.money.lending.helpers import borrower, product

HX = {"HX-Request": "true"}
D = Decimal


def body(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def prod(app):
    return product()


@pytest.fixture
def officer(login_as):
    return login_as("admin", full_name="Olga Officer")


_n = iter(range(10**6))


def application(prod, amount="800", term=12, collateral=None):
    student = borrower(f"borrower-{next(_n)}-{uuid.uuid4().hex[:6]}@tests.example")
    loan = services.apply(student, prod.id, amount, term, "Laptop for my course", ledger.new_key())
    db.session.commit()
    return loan


def paid_out(prod, **kw):
    loan = application(prod, **kw)
    someone = create_user("admin")
    services.approve(someone, loan.id)
    services.disburse(someone, loan.id)
    db.session.commit()
    return loan


def state_of(loan) -> LoanState:
    db.session.expire_all()
    return db.session.get(type(loan), loan.id).state


def test_the_queue_shows_applications_with_their_assessment(client, officer, prod):
    loan = application(prod)
    html = body(client.get("/wallet/admin/loans"))
    assert "Ada Borrower" in html and "800.00 USD" in html
    assert "Band C · score" in html and f"/wallet/admin/loans/{loan.id}" in html
    assert "Above 1000 (in the loan's currency) two officers approve" in html
    page = body(client.get(f"/wallet/admin/loans/{loan.id}"))
    for factor in ("Identity", "Account age", "AML screening"):
        assert factor in page
    assert "Approve" in page and "Send the counter-offer" in page


def test_approve_then_disburse(client, officer, prod):
    loan = application(prod)
    done = client.post(f"/wallet/admin/loans/{loan.id}/approve", data={"reason": "Good record"})
    assert done.status_code == 302 and state_of(loan) == LoanState.APPROVED
    assert "Approved: the loan can be paid out." in body(client.get(done.headers["Location"]))
    assert client.post(f"/wallet/admin/loans/{loan.id}/disburse").status_code == 302
    assert state_of(loan) == LoanState.ACTIVE
    again = client.post(f"/wallet/admin/loans/{loan.id}/disburse")
    assert again.status_code == 409 and "cannot be paid out" in body(again)
    assert ledger.user_wallet(loan.user_id, "USD").balance == D("784.00")  # 800 less the 2% fee, once


def test_four_eyes_above_the_threshold(client, officer, login_as, prod):
    loan = application(prod, amount="1500")
    first = client.post(f"/wallet/admin/loans/{loan.id}/approve", data={"reason": "Fine"})
    assert first.status_code == 302 and state_of(loan) == LoanState.SUBMITTED
    page = body(client.get(first.headers["Location"]))
    assert "a second officer must confirm it" in page and "waiting for a second officer" in page
    same = client.post(f"/wallet/admin/loans/{loan.id}/approve", data={"reason": "Fine"})
    assert same.status_code == 409 and "Another officer must confirm" in body(same)
    assert state_of(loan) == LoanState.SUBMITTED
    client.post("/auth/logout")
    login_as("admin", full_name="Second Officer")
    page = body(client.get(f"/wallet/admin/loans/{loan.id}"))
    assert "Confirm the approval (second officer)" in page and "Approved by Olga Officer" in page
    assert client.post(f"/wallet/admin/loans/{loan.id}/approve").status_code == 302
    assert state_of(loan) == LoanState.APPROVED
    assert "confirmed by Second Officer" in body(client.get(f"/wallet/admin/loans/{loan.id}"))


def test_reject_needs_a_reason(client, officer, prod):
    loan = application(prod)
    bad = client.post(f"/wallet/admin/loans/{loan.id}/reject", data={"reason": "  "})
    assert bad.status_code == 422 and "Give a reason" in body(bad)
    assert state_of(loan) == LoanState.SUBMITTED
    assert client.post(f"/wallet/admin/loans/{loan.id}/reject", data={"reason": "Too soon"}).status_code == 302
    assert state_of(loan) == LoanState.REJECTED


@pytest.mark.parametrize(("data", "message"), [
    ({"amount": "50", "term": "10", "rate": "10", "reason": "x"}, "Borrow between"),
    ({"amount": "abc", "term": "10", "rate": "10", "reason": "x"}, ""),
    ({"amount": "500", "term": "ten", "rate": "10", "reason": "x"}, "whole number"),
    ({"amount": "500", "term": "10", "rate": "many", "reason": "x"}, "rate"),
    ({"amount": "500", "term": "10", "rate": "101", "reason": "x"}, "between 0 and 100"),
    ({"amount": "500", "term": "10", "rate": "10", "reason": ""}, "Give a reason"),
])
def test_bad_counter_offers_are_messages(client, officer, prod, data, message):
    loan = application(prod)
    response = client.post(f"/wallet/admin/loans/{loan.id}/counter-offer", data=data)
    assert response.status_code == 422, body(response)[:500]
    assert message in body(response) and 'class="field-error"' in body(response)
    assert state_of(loan) == LoanState.SUBMITTED


def test_a_counter_offer_changes_the_terms(client, officer, prod):
    loan = application(prod)
    done = client.post(f"/wallet/admin/loans/{loan.id}/counter-offer",
                       data={"amount": "600", "term": "10", "rate": "11", "reason": "Less for now"})
    assert done.status_code == 302
    db.session.expire_all()
    changed = db.session.get(type(loan), loan.id)
    assert (changed.principal, changed.term, changed.annual_rate) == (D("600.00"), 10, D("11"))
    assert "The student has not accepted the counter-offer yet." in body(client.get(done.headers["Location"]))


def test_restructure_keeps_the_old_schedule_in_the_history(client, officer, prod):
    loan = paid_out(prod)
    bad = client.post(f"/wallet/admin/loans/{loan.id}/restructure",
                      data={"term": "18", "rate": "9", "grace": "x", "reason": "Hardship"})
    assert bad.status_code == 422 and "grace period" in body(bad)
    done = client.post(f"/wallet/admin/loans/{loan.id}/restructure",
                       data={"term": "18", "rate": "9", "grace": "1", "reason": "Hardship"})
    assert done.status_code == 302 and state_of(loan) == LoanState.RESTRUCTURED
    count = len(db.session.scalars(select(LoanInstalment).where(LoanInstalment.loan_id == loan.id)).all())
    assert count == 18
    page = body(client.get(f"/wallet/admin/loans/{loan.id}"))
    assert "Old schedule (12 instalments)" in page and "Hardship" in page


def test_write_off_is_confirmed_first(client, officer, prod):
    loan = paid_out(prod)
    bad = client.post(f"/wallet/admin/loans/{loan.id}/write-off", data={"reason": ""})
    assert bad.status_code == 422 and "Give a reason" in body(bad)
    confirm = client.post(f"/wallet/admin/loans/{loan.id}/write-off", data={"reason": "Unreachable"})
    assert confirm.status_code == 200 and "Booked as a loss" in body(confirm) and "800.00 USD" in body(confirm)
    assert state_of(loan) == LoanState.ACTIVE
    done = client.post(f"/wallet/admin/loans/{loan.id}/write-off", data={"reason": "Unreachable", "confirmed": "1"})
    assert done.status_code == 302 and state_of(loan) == LoanState.WRITTEN_OFF
    again = client.post(f"/wallet/admin/loans/{loan.id}/write-off", data={"reason": "Unreachable", "confirmed": "1"})
    assert again.status_code == 409
    kinds = db.session.scalars(select(LoanEvent.kind).where(LoanEvent.loan_id == loan.id)).all()
    assert kinds.count("written_off") == 1


def test_book_par_aging_collections_and_csv(client, officer, prod):
    """Rows other tests committed may be in the book: the figures are checked for what these two
    loans add (the 1-30 bucket and PAR 1 move, PAR 30 does not)."""
    before = {p.currency: p for p in admin_queries.portfolio(officer)}.get("USD")
    with time_machine.travel(utcnow() - timedelta(days=50), tick=False):
        late = paid_out(prod)
    on_time = paid_out(prod, amount="400")
    after = {p.currency: p for p in admin_queries.portfolio(officer)}["USD"]
    assert after.loans == (before.loans if before else 0) + 2
    book = body(client.get("/wallet/admin/loans/book"))
    assert f'<dd class="par-1">{after.par[1]}%</dd>' in book and f'<dd class="par-30">{after.par[30]}%</dd>' in book
    assert after.par[1] > (before.par[1] if before else 0)
    first_bucket = after.buckets[0]
    assert first_bucket.loans == (before.buckets[0].loans if before else 0) + 1
    assert (f'<tr class="bucket-1"><td>1-30</td><td class="amount">{first_bucket.loans}</td>'
            f'<td class="amount">{format_amount(first_bucket.outstanding_principal, "USD")}</td>') in book
    collections = body(client.get("/wallet/admin/loans/collections"))
    assert f"/wallet/admin/loans/{late.id}" in collections and f"/wallet/admin/loans/{on_time.id}" not in collections
    response = client.get("/wallet/admin/loans/book.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = {r["loan_id"]: r for r in csv.DictReader(io.StringIO(body(response)))}
    assert {str(late.id), str(on_time.id)} <= set(rows)
    first_due = min(db.session.scalars(select(LoanInstalment.due_on).where(LoanInstalment.loan_id == late.id)))
    assert rows[str(late.id)]["days_in_arrears"] == str((services.today() - first_due).days)
    assert rows[str(on_time.id)]["days_in_arrears"] == "0"
    assert rows[str(on_time.id)]["outstanding_principal"] == "400.00"


def test_compliance_reads_but_does_not_decide(client, login_as, prod):
    loan = application(prod)
    login_as("compliance")
    for path in ("/wallet/admin/loans", "/wallet/admin/loans/book", "/wallet/admin/loans/collections",
                 "/wallet/admin/loans/book.csv", f"/wallet/admin/loans/{loan.id}"):
        assert client.get(path).status_code == 200, path
    page = body(client.get(f"/wallet/admin/loans/{loan.id}"))
    assert "You can read this loan; loan officers decide." in page and "Approve</button>" not in page
    for action in ("approve", "reject", "counter-offer", "disburse", "restructure", "write-off"):
        assert client.post(f"/wallet/admin/loans/{loan.id}/{action}", data={"reason": "x"}).status_code == 403
    assert state_of(loan) == LoanState.SUBMITTED



def test_compliance_finds_the_loan_book_in_its_navigation(client, login_as, prod):
    """The compliance area's menu links the loan book (the pages answer compliance), and the
    link leads to the book."""
    import re

    login_as("compliance")
    page = body(client.get("/compliance/"))
    nav = page.split('<nav class="case-nav" aria-label="Compliance">', 1)[1].split("</nav>", 1)[0]
    links = dict((label, href) for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav))
    assert links["Loan book"] == "/wallet/admin/loans/book"
    book = client.get(links["Loan book"])
    assert book.status_code == 200 and "Every loan paid out" in body(book)

ADMIN_PAGES = ["/wallet/admin/loans", "/wallet/admin/loans/book", "/wallet/admin/loans/collections",
               "/wallet/admin/loans/book.csv"]


@pytest.mark.parametrize("headers", [{}, HX])
@pytest.mark.parametrize("role", ["student", "faculty"])
def test_others_are_refused(client, login_as, prod, role, headers):
    loan = application(prod)
    login_as(role)
    for path in [*ADMIN_PAGES, f"/wallet/admin/loans/{loan.id}"]:
        assert client.get(path, headers=headers).status_code == 403, path
    assert client.post(f"/wallet/admin/loans/{loan.id}/approve", headers=headers).status_code == 403
    assert state_of(loan) == LoanState.SUBMITTED


@pytest.mark.parametrize("headers", [{}, HX])
def test_anonymous_is_sent_to_login(client, headers):
    for path in ADMIN_PAGES:
        assert client.get(path, headers=headers).status_code in (302, 401)


def test_unknown_and_malformed_loans(client, officer):
    assert client.get(f"/wallet/admin/loans/{uuid.uuid4()}").status_code == 404
    assert client.get("/wallet/admin/loans/not-a-uuid").status_code == 404
    assert client.post(f"/wallet/admin/loans/{uuid.uuid4()}/approve").status_code == 404
    assert client.post(f"/wallet/admin/loans/{uuid.uuid4()}/write-off", data={"reason": "x"}).status_code == 404


@pytest.mark.parametrize("headers", [HX, {**HX, "HX-Boosted": "true"}])
def test_admin_pages_answer_htmx(client, officer, prod, headers):
    loan = application(prod)
    for path in [*ADMIN_PAGES, f"/wallet/admin/loans/{loan.id}"]:
        assert client.get(path, headers=headers).status_code == 200
    done = client.post(f"/wallet/admin/loans/{loan.id}/approve", headers=headers)
    assert done.status_code == 204 and done.headers["HX-Location"].endswith(f"/wallet/admin/loans/{loan.id}")


@pytest.mark.parametrize("path", ["/wallet/admin/loans", "/wallet/admin/loans/book",
                                  "/wallet/admin/loans/collections", "LOAN"])
def test_admin_pages_stay_flat_with_data(client, officer, prod, statements, path):
    first = paid_out(prod)
    application(prod)
    url = f"/wallet/admin/loans/{first.id}" if path == "LOAN" else path
    client.get(url)
    with statements() as few:
        assert client.get(url).status_code == 200
    for _ in range(4):
        paid_out(prod)
        application(prod)
    with statements() as many:
        assert client.get(url).status_code == 200
    assert many.count == few.count, (few.statements, many.statements)
