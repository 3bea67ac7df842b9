"""Row-level security on the lending tables, through the app role with no WHERE clause: a
student reads only their own loans, schedules, repayments, collateral, events, assessments and
accruals; admins and compliance officers read all (compliance changes nothing); faculty read
none; products are a catalogue every identified user reads."""

from __future__ import annotations

from datetime import date

import pytest
from psycopg import errors as pg
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.money.lending import services, tasks
from portal.money.lending.models import (
    Collateral,
    Loan,
    LoanAccrual,
    LoanAssessment,
    LoanEvent,
    LoanInstalment,
    LoanProduct,
    Repayment,
)
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.lending.helpers import START, borrower, fund, on, product
from tests.rls import visible

PRIVATE = {"loans": Loan, "loan_instalments": LoanInstalment, "repayments": Repayment, "collaterals": Collateral,
           "loan_events": LoanEvent, "loan_assessments": LoanAssessment, "loan_accruals": LoanAccrual}


def _rows(student, prod, officer, n):
    fund(student, "0.1", "BTC")
    with on(START):
        with as_user(student):
            loan = services.apply(student, prod.id, "500.00", 6, "Books", f"application-key-{n}0001",
                                  collateral_currency="BTC", raw_collateral="0.01")
        with as_user(officer):
            services.approve(officer, loan.id)
            services.disburse(officer, loan.id)
    with on(date(2026, 2, 15)), as_user(student):
        services.repay(student, loan.id, "10.00", f"repayment-key-{n}0001")
    with on(date(2026, 2, 20)):
        tasks.accrue_penalties(date(2026, 2, 20))
    db.session.flush()
    with as_user(officer):
        return {name: {r for r in visible(model) if db.session.get(model, r).user_id == student.id}
                for name, model in PRIVATE.items()}


@pytest.fixture
def two_borrowers():
    prod, officer = product(), create_user("admin")
    first, second = borrower("first.borrower@tests.example"), borrower("second.borrower@tests.example")
    return first, _rows(first, prod, officer, "a"), second, _rows(second, prod, officer, "b")


@pytest.mark.parametrize("table", sorted(PRIVATE))
def test_a_student_reads_only_their_own_rows(two_borrowers, table):
    first, first_rows, _second, second_rows = two_borrowers
    assert first_rows[table] and second_rows[table]
    with as_user(first):
        seen = visible(PRIVATE[table])
    assert first_rows[table] <= seen and not (second_rows[table] & seen)


@pytest.mark.parametrize("role, sees_all", [("admin", True), ("compliance", True), ("faculty", False)])
def test_staff_reads(two_borrowers, role, sees_all):
    _first, first_rows, _second, second_rows = two_borrowers
    with as_user(create_user(role)):
        for table, model in PRIVATE.items():
            seen = visible(model)
            both = first_rows[table] | second_rows[table]
            assert (both <= seen) if sees_all else not (both & seen), table


def test_compliance_changes_nothing(two_borrowers):
    first, first_rows, _second, _ = two_borrowers
    loan_id = next(iter(first_rows["loans"]))
    with as_user(create_user("compliance")):
        changed = db.session.execute(update(Loan).where(Loan.id == loan_id).values(purpose="x")).rowcount
    assert changed == 0


def test_a_student_cannot_write_a_loan_for_someone_else(two_borrowers):
    first, _, second, second_rows = two_borrowers
    with as_user(first):
        assert db.session.execute(update(Loan).where(Loan.id == next(iter(second_rows["loans"])))
                                  .values(purpose="x")).rowcount == 0
        with pytest.raises(DBAPIError) as caught, db.session.begin_nested():
            db.session.execute(update(Loan).where(Loan.user_id == first.id).values(user_id=second.id))
    assert isinstance(caught.value.orig, pg.InsufficientPrivilege)


def test_products_are_a_catalogue():
    prod = product()
    with as_user(create_user("student")):
        assert prod.id in visible(LoanProduct)
        assert db.session.execute(update(LoanProduct).values(active=False)).rowcount == 0
