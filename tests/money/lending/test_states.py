"""The transition table of loans and instalments, and the database's own checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from psycopg import errors as pg
from sqlalchemy.exc import DBAPIError

from portal.db import db
from portal.money.lending import states
from portal.money.lending.models import InstalmentState, LoanState, Repayment
from tests.money.lending.helpers import borrower, product, running_loan

L, I = LoanState, InstalmentState  # noqa: E741


@pytest.mark.parametrize("current, to", [(L.SUBMITTED, L.APPROVED), (L.APPROVED, L.ACTIVE), (L.ACTIVE, L.CLOSED),
                                         (L.ACTIVE, L.RESTRUCTURED), (L.RESTRUCTURED, L.WRITTEN_OFF),
                                         (L.SUBMITTED, L.REJECTED)])
def test_allowed_loan_moves(current, to):
    loan = SimpleNamespace(state=current)
    assert states.move_loan(loan, to) == current and loan.state == to


@pytest.mark.parametrize("current, to", [(L.SUBMITTED, L.ACTIVE), (L.CLOSED, L.ACTIVE), (L.REJECTED, L.APPROVED),
                                         (L.WRITTEN_OFF, L.CLOSED), (L.ACTIVE, L.SUBMITTED)])
def test_forbidden_loan_moves_raise(current, to):
    loan = SimpleNamespace(state=current)
    with pytest.raises(states.ForbiddenTransition):
        states.move_loan(loan, to)
    assert loan.state == current


@pytest.mark.parametrize("current, to, ok", [(I.DUE, I.PARTIALLY_PAID, True), (I.PARTIALLY_PAID, I.PAID, True),
                                             (I.DUE, I.OVERDUE, True), (I.OVERDUE, I.PAID, True),
                                             (I.OVERDUE, I.OVERDUE, True), (I.PAID, I.DUE, False),
                                             (I.OVERDUE, I.DUE, False), (I.PAID, I.OVERDUE, False)])
def test_instalment_moves(current, to, ok):
    line = SimpleNamespace(state=current)
    if ok:
        states.move_instalment(line, to)
        assert line.state == to
    else:
        with pytest.raises(states.ForbiddenTransition):
            states.move_instalment(line, to)


def test_the_database_refuses_an_allocation_that_does_not_add_up():
    loan = running_loan(borrower(), product())
    with pytest.raises(DBAPIError) as caught, db.session.begin_nested():
        db.session.add(Repayment(loan_id=loan.id, user_id=loan.user_id, amount=10, currency="USD",
                                 source="student", principal=5, interest=4, fee=0, penalty=0,
                                 paid_on=loan.disbursed_on, idempotency_key="k"))
        db.session.flush()
    assert isinstance(caught.value.orig, pg.CheckViolation)
