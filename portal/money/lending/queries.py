"""Reads for the student's "Loans" pages: what they could borrow and why, their loans, one loan's
schedule (paid, due, overdue), repayments, collateral and history. HTTP-free; each function
takes the student and reads only their rows (row-level security holds the same line)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import case, func, select

from portal.accounts.models import User
from portal.db import db
from portal.money.lending import services
from portal.money.lending.assessment import Assessment
from portal.money.lending.models import (
    Collateral,
    InstalmentState,
    Loan,
    LoanEvent,
    LoanInstalment,
    LoanProduct,
    LoanState,
    Repayment,
)
from portal.money.lending.states import OPEN, RUNNING

ZERO = Decimal(0)


@dataclass(frozen=True)
class ProductChoice:
    product: LoanProduct
    assessment: Assessment


def borrowing_overview(user: User) -> list[ProductChoice]:
    """Each active product with what the student could borrow from it and why."""
    products = db.session.scalars(select(LoanProduct).where(LoanProduct.active.is_(True))
                                  .order_by(LoanProduct.name)).all()
    return [ProductChoice(p, services.assessment_for(user, p)) for p in products]


def overdue_on(on: date):
    """The one definition of an overdue instalment for the student's pages, as SQL: due before
    ``on`` (today's date on the lending clock) and not fully paid. The nightly job marks such
    lines ``overdue`` (and accrues penalties) later; the pages do not wait for it."""
    return (LoanInstalment.state != InstalmentState.PAID) & (LoanInstalment.due_on < on)


@dataclass(frozen=True)
class LoanRow:
    loan: Loan
    outstanding_principal: Decimal
    next_due_on: date | None
    overdue: int


def my_loans(user: User, on: date | None = None) -> list[LoanRow]:
    """The student's loans, newest first, with what is left, the next due date and how many
    instalments are overdue on ``on`` (``overdue_on``, as the loan's page counts them; one query)."""
    on = on or services.today()
    unpaid = LoanInstalment.state != InstalmentState.PAID
    stmt = (select(Loan,
                   func.coalesce(func.sum(LoanInstalment.principal - LoanInstalment.principal_paid), 0),
                   func.min(case((unpaid, LoanInstalment.due_on))),
                   func.count(case((overdue_on(on), 1))))
            .outerjoin(LoanInstalment, LoanInstalment.loan_id == Loan.id)
            .where(Loan.user_id == user.id).group_by(Loan.id)
            .order_by(Loan.created_at.desc(), Loan.id.desc()))
    return [LoanRow(loan, Decimal(left), due, overdue) for loan, left, due, overdue in db.session.execute(stmt)]


@dataclass(frozen=True)
class ScheduleLine:
    instalment: LoanInstalment
    #: What the page shows: paid, partially paid, due, overdue (``overdue_on``: an unpaid past
    #: one is overdue even before the nightly job marks it).
    status: InstalmentState
    outstanding: Decimal


@dataclass(frozen=True)
class LoanDetail:
    loan: Loan
    schedule: list[ScheduleLine]
    repayments: list[Repayment]
    collaterals: list[Collateral]
    events: list[LoanEvent]
    #: What closes the loan today (running loans only).
    payoff: Decimal | None
    #: Due today or before and not paid.
    due_now: Decimal
    open_application: bool


def loan_detail(user: User, loan_id: uuid.UUID, on: date | None = None) -> LoanDetail:
    on = on or services.today()
    loan = services.own_loan(user, loan_id)
    rows = db.session.execute(select(LoanInstalment, overdue_on(on)).where(LoanInstalment.loan_id == loan.id)
                              .order_by(LoanInstalment.number))
    schedule = [ScheduleLine(line, InstalmentState.OVERDUE if overdue else InstalmentState(line.state),
                             line.outstanding) for line, overdue in rows]
    repayments = db.session.scalars(select(Repayment).where(Repayment.loan_id == loan.id)
                                    .order_by(Repayment.paid_on.desc(), Repayment.created_at.desc())).all()
    collaterals = db.session.scalars(select(Collateral).where(Collateral.loan_id == loan.id)
                                     .order_by(Collateral.created_at)).all()
    events = db.session.scalars(select(LoanEvent).where(LoanEvent.loan_id == loan.id)
                                .order_by(LoanEvent.created_at, LoanEvent.id)).all()
    running = loan.state in RUNNING
    due_now = sum((x.outstanding for x in schedule if x.instalment.due_on <= on
                   and x.status != InstalmentState.PAID), ZERO)
    return LoanDetail(loan, schedule, list(repayments), list(collaterals), list(events),
                      services.payoff_amount(loan, on) if running else None, due_now,
                      LoanState(loan.state) in OPEN)
