"""The student's reads and the officers' portfolio: PAR, aging buckets, collections, CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal as D

import pytest

from portal.errors import Forbidden, NotFound
from portal.money.lending import admin_queries, queries, services
from portal.money.lending.models import InstalmentState
from tests.factories import create_user
from tests.money.lending.helpers import START, as_user, borrower, on, product, running_loan

TODAY = date(2026, 5, 26)


@pytest.fixture
def book():
    """Four 1,000 USD loans paid out on 15 January (88.85 a month from 15 February), seen on 26 May:
    A paid instalments 1-4 (current), B 1-3 (11 days late), C 1 (72 days), D nothing (100 days)."""
    prod = product()
    officer = create_user("admin")
    loans = {}
    for name, paid in (("a", 4), ("b", 3), ("c", 1), ("d", 0)):
        student = borrower(f"{name}.borrower@tests.example")
        loan = running_loan(student, prod, key=f"application-key-{name}0001", officer=officer)
        if paid:
            with on(date(2026, 5, 15)), as_user(student):
                services.repay(student, loan.id, str(D("88.85") * paid), f"repayment-key-{name}0001")
        loans[name] = (student, loan)
    return officer, loans


def test_portfolio_at_risk_and_aging_buckets(book):
    officer, _loans = book
    (usd,) = [p for p in admin_queries.portfolio(officer, TODAY) if p.currency == "USD"]
    # Outstanding principal: A 679.84, B 761.08, C 921.15, D 1,000.00 = 3,362.07.
    assert usd.loans == 4 and usd.outstanding_principal == D("3362.07")
    assert usd.par == {1: D("79.78"), 30: D("57.14"), 90: D("29.74")}
    buckets = {b.label: (b.loans, b.outstanding_principal) for b in usd.buckets}
    assert buckets == {"1-30": (1, D("761.08")), "31-60": (0, D("0")), "61-90": (1, D("921.15")),
                       "90+": (1, D("1000.00"))}


def test_collections_longest_first(book):
    officer, loans = book
    rows = [r for r in admin_queries.collections(officer, TODAY) if r.currency == "USD"]
    assert [r.loan_id for r in rows] == [loans["d"][1].id, loans["c"][1].id, loans["b"][1].id]
    assert [r.days_in_arrears for r in rows] == [100, 72, 11]
    assert rows[0].overdue_amount == D("88.85") * 4


def test_book_csv(book):
    officer, loans = book
    rows = list(csv.reader(io.StringIO(admin_queries.book_csv(officer, TODAY))))
    assert rows[0] == list(admin_queries.CSV_COLUMNS)
    by_id = {r[0]: r for r in rows[1:]}
    d = by_id[str(loans["d"][1].id)]
    assert d[5:10] == ["USD", "1000.00", "1000.00", "355.40", "100"]


def test_the_book_is_for_officers_and_compliance(book):
    with pytest.raises(Forbidden):
        admin_queries.loan_book(book[1]["a"][0], TODAY)
    ours = {loan.id for _student, loan in book[1].values()}
    assert {r.loan_id for r in admin_queries.loan_book(create_user("compliance"), TODAY)} >= ours


def test_queue_shows_the_assessment():
    prod = product()
    student = borrower()
    with on(START), as_user(student):
        loan = services.apply(student, prod.id, "800.00", 12, "Books", "application-key-0001")
    rows = [r for r in admin_queries.queue(create_user("admin")) if r.loan.user_id == student.id]
    assert [r.loan.id for r in rows] == [loan.id]
    assert rows[0].assessment.band == "C" and rows[0].assessment.lines[0]["factor"] == "Identity"


def test_student_schedule_shows_paid_due_and_overdue(book):
    _officer, loans = book
    student, loan = loans["c"]
    with on(TODAY), as_user(student):
        detail = queries.loan_detail(student, loan.id)
        mine = queries.my_loans(student)
    statuses = [x.status for x in detail.schedule[:6]]
    assert statuses == [InstalmentState.PAID] + [InstalmentState.OVERDUE] * 3 + [InstalmentState.DUE] * 2
    assert detail.due_now == D("88.85") * 3
    assert [r.loan.id for r in mine] == [loan.id] and mine[0].outstanding_principal == D("921.15")
    other = loans["a"][0]
    with as_user(other), pytest.raises(NotFound):
        queries.loan_detail(other, loan.id)


def test_borrowing_overview_explains_the_limit():
    prod = product()
    student = borrower()
    with on(START), as_user(student):
        (choice,) = [c for c in queries.borrowing_overview(student) if c.product.id == prod.id]
    assert choice.assessment.limit == D("2000.00")
    assert [line.factor for line in choice.assessment.lines] == ["Identity", "Account age", "Learning record",
                                                                 "Earnings", "Repayment history", "AML screening"]
