"""Lending under concurrency, on separate connections: two tabs applying, two tabs repaying,
and the daily job on two workers at once each come to one outcome. Rows committed here stay
(the ledger is append-only); each test uses its own users and an AZR product of its own, so
the rolled-back tests' USD figures are not disturbed."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.errors import Conflict, DomainError
from portal.money.lending import services, tasks
from portal.money.lending.models import Loan, LoanAccrual, LoanInstalment, Repayment
from tests.factories import create_user
from tests.money.lending.helpers import START, borrower, fund, on, product
from tests.races import committed, race, read

pytestmark = pytest.mark.no_db_rollback


def _setup(app, *, disbursed: bool):
    """A borrower and an AZR product of their own (and, if asked, a loan paid out on START)."""
    def make():
        student = borrower(f"race.{uuid.uuid4().hex[:10]}@tests.example")
        prod = product(name=f"Race loan {uuid.uuid4().hex[:8]}", currency_code="AZR")
        fund(student, "500", "AZR")
        loan_id = None
        if disbursed:
            officer = create_user("admin")
            with acting_as(Actor.for_user(student.id, "student"), db.session):
                loan_id = services.apply(student, prod.id, "1000", 12, "Race", uuid.uuid4().hex).id
            with acting_as(Actor.for_user(officer.id, "admin"), db.session):
                services.approve(officer, loan_id)
                services.disburse(officer, loan_id)
        return student.id, prod.id, loan_id

    with on(START):
        return committed(app, make)


def test_two_tabs_applying_make_one_application(app):
    student_id, product_id, _ = _setup(app, disbursed=False)
    with on(START):
        outcomes = race(app, [(student_id, "student",
                               lambda user, k=k: services.apply(user, product_id, "800", 6, "Books", k).id)
                              for k in (uuid.uuid4().hex, uuid.uuid4().hex)], expected=(Conflict,))
    assert sorted(o.ok for o in outcomes) == [False, True]
    assert "already have an application" in next(o.refused for o in outcomes if not o.ok).message
    count = read(app, lambda: db.session.scalar(select(func.count()).select_from(Loan)
                                                 .where(Loan.user_id == student_id)))
    assert count == 1


def test_two_tabs_repaying_one_form_pay_once(app):
    student_id, _, loan_id = _setup(app, disbursed=True)
    key = uuid.uuid4().hex
    with on(date(2026, 2, 15)):
        outcomes = race(app, [(student_id, "student",
                               lambda user: services.repay(user, loan_id, "88.84878868", key).id)] * 2)
    assert outcomes[0].value == outcomes[1].value
    count = read(app, lambda: db.session.scalar(select(func.count()).select_from(Repayment)
                                                 .where(Repayment.loan_id == loan_id)))
    assert count == 1


def test_two_tabs_paying_off_pay_once(app):
    student_id, _, loan_id = _setup(app, disbursed=True)
    with on(START):
        outcomes = race(app, [(student_id, "student",
                               lambda user, k=k: services.repay(user, loan_id, "1000", k).id)
                              for k in (uuid.uuid4().hex, uuid.uuid4().hex)], expected=(DomainError,))
    assert sorted(o.ok for o in outcomes) == [False, True]
    paid = read(app, lambda: db.session.scalar(select(func.sum(Repayment.amount))
                                                .where(Repayment.loan_id == loan_id)))
    assert paid == Decimal("1000")


def test_the_daily_job_on_two_workers_accrues_once(app):
    _, _, loan_id = _setup(app, disbursed=True)
    day = date(2026, 3, 1)  # instalment 1 (15 Feb) 14 days late
    barrier = threading.Barrier(2)
    results = []

    def worker():
        with app.app_context(), acting_as(Actor.system("worker")):
            try:
                barrier.wait(timeout=30)
                results.append(tasks.accrue_penalties(day)["days_accrued"])
                db.session.commit()
            finally:
                db.session.rollback()
                db.session.remove()

    with on(day):
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    days = read(app, lambda: db.session.scalar(select(func.count()).select_from(LoanAccrual)
                                                .where(LoanAccrual.loan_id == loan_id)))
    penalty = read(app, lambda: db.session.scalar(select(LoanInstalment.penalty).where(
        LoanInstalment.loan_id == loan_id, LoanInstalment.number == 1)))
    assert days == 14 and sorted(results) == [0, 14]
    # 0.1% a day of 88.84878868 AZR is 0.08884879; fourteen days once, not twice.
    assert penalty == Decimal("0.08884879") * 14
