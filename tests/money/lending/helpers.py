"""Rows and actions shared by the lending tests."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import time_machine

from portal.db import db
from portal.money.lending import services
from portal.money.lending.models import LoanInstalment
from tests.compliance.factories import verify
from tests.factories import create_user
from tests.helpers import as_user
from tests.money.factories import fund

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


@contextmanager
def on(day):
    """The clock at 09:00 UTC on ``day`` (a date or datetime), not ticking."""
    moment = day if isinstance(day, datetime) else datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    with time_machine.travel(moment, tick=False):
        yield


def borrower(email="ada.borrower@tests.example"):
    """A student in band C (identity level 2, account over a year old): rate margin +4, half the
    product's maximum."""
    student = create_user("student", full_name="Ada Borrower", email=email)
    verify(student, 2)
    student.created_at = START - timedelta(days=400)
    db.session.flush()
    return student


def product(**changes):
    """8% a year (12% with band C's margin), declining balance annuity, monthly, 2% fee."""
    fields = dict(name="Study loan", currency_code="USD", min_amount=Decimal("100"), max_amount=Decimal("4000"),
                  min_term=3, max_term=24, annual_rate=Decimal("8"), fee_percent=Decimal("2"),
                  penalty_daily_percent=Decimal("0.1")) | changes
    return services.create_product(None, **fields)


def running_loan(student, prod, amount="1000.00", term=12, key="loan-application-0001", officer=None):
    """An application approved and paid out on START."""
    officer = officer or create_user("admin")
    with on(START):
        with as_user(student):
            loan = services.apply(student, prod.id, amount, term, "Laptop for my course", key)
        with as_user(officer):
            services.approve(officer, loan.id)
            services.disburse(officer, loan.id)
    return loan


def lines(loan):
    db.session.expire_all()
    return list(db.session.scalars(db.select(LoanInstalment).where(LoanInstalment.loan_id == loan.id)
                                   .order_by(LoanInstalment.number)))


__all__ = ["START", "as_user", "borrower", "fund", "lines", "on", "product", "running_loan"]
