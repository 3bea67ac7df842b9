"""Reads for the loan officers' pages (admins; compliance officers may read them too): the
application queue with each assessment, the loan book, portfolio at risk (PAR 1/30/90), arrears
aging buckets, the collections list and the CSV export of the book.

Definitions (as microfinance reports them):

- *Outstanding principal*: principal not yet repaid, of running loans (active or restructured).
- *Days in arrears*: days since the oldest instalment still unpaid fell due (0 when none is late).
- *PAR n*: outstanding principal of loans more than ``n`` days in arrears, over all outstanding
  principal, in percent. PAR 1 counts any loan a day late or more.
- *Aging buckets*: running loans by days in arrears, 1-30, 31-60, 61-90 and over 90, with their
  count, outstanding principal and the amount overdue.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import and_, case, func, select

from portal.accounts.models import User
from portal.db import db
from portal.errors import Forbidden
from portal.exports import csv_safe
from portal.money.currency import currency
from portal.money.lending import services
from portal.money.lending.models import (
    InstalmentState,
    Loan,
    LoanAssessment,
    LoanInstalment,
    LoanProduct,
    LoanState,
)
from portal.money.lending.states import OPEN, RUNNING
from portal.security.permissions import Permission, has_permission

ZERO = Decimal(0)
BUCKETS = (("1-30", 1, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))


def _require_viewer(user: User) -> None:
    if not (has_permission(user.role, Permission.MANAGE_MONEY)
            or has_permission(user.role, Permission.REVIEW_COMPLIANCE)):
        raise Forbidden("Only loan officers and compliance officers see the loan book.")


@dataclass(frozen=True)
class QueueRow:
    loan: Loan
    borrower_name: str
    borrower_email: str
    assessment: LoanAssessment | None
    #: Above the four-eyes amount with one approval: waiting for a second officer.
    awaiting_confirmation: bool


def queue(officer: User) -> list[QueueRow]:
    """Applications waiting for a decision or a payout, oldest first, with their assessment."""
    _require_viewer(officer)
    stmt = (select(Loan, User.full_name, User.email, LoanAssessment)
            .join(User, User.id == Loan.user_id)
            .outerjoin(LoanAssessment, LoanAssessment.loan_id == Loan.id)
            .where(Loan.state.in_(OPEN)).order_by(Loan.created_at, Loan.id))
    return [QueueRow(loan, name, email, judged,
                     loan.state == LoanState.SUBMITTED and loan.approved_by_id is not None)
            for loan, name, email, judged in db.session.execute(stmt)]


@dataclass(frozen=True)
class BookRow:
    loan_id: object
    borrower_name: str
    borrower_email: str
    product: str
    state: str
    currency: str
    principal: Decimal
    outstanding_principal: Decimal
    overdue_amount: Decimal
    days_in_arrears: int
    disbursed_on: date | None


def _book_statement(on: date, *, running_only: bool):
    unpaid = LoanInstalment.state != InstalmentState.PAID
    late = and_(unpaid, LoanInstalment.due_on < on)
    overdue_amount = (LoanInstalment.principal - LoanInstalment.principal_paid + LoanInstalment.interest
                      - LoanInstalment.interest_paid - LoanInstalment.interest_waived + LoanInstalment.fee
                      - LoanInstalment.fee_paid + LoanInstalment.penalty - LoanInstalment.penalty_paid)
    stmt = (select(Loan.id, User.full_name, User.email, LoanProduct.name, Loan.state, Loan.currency, Loan.principal,
                   func.coalesce(func.sum(LoanInstalment.principal - LoanInstalment.principal_paid), 0),
                   func.coalesce(func.sum(case((late, overdue_amount), else_=0)), 0),
                   func.min(case((late, LoanInstalment.due_on))), Loan.disbursed_on)
            .join(User, User.id == Loan.user_id).join(LoanProduct, LoanProduct.id == Loan.product_id)
            .outerjoin(LoanInstalment, LoanInstalment.loan_id == Loan.id)
            .group_by(Loan.id, User.full_name, User.email, LoanProduct.name)
            .order_by(Loan.disbursed_on.desc().nulls_last(), Loan.id))
    if running_only:
        stmt = stmt.where(Loan.state.in_(RUNNING))
    else:
        stmt = stmt.where(Loan.state.notin_(OPEN | {LoanState.REJECTED, LoanState.WITHDRAWN}))
    return stmt


def loan_book(officer: User, on: date | None = None, *, running_only: bool = False) -> list[BookRow]:
    """Every disbursed loan (or only the running ones), newest first, one query."""
    _require_viewer(officer)
    on = on or services.today()
    rows = []
    for loan_id, name, email, product, state, code, principal, left, overdue, oldest, disbursed in db.session.execute(
            _book_statement(on, running_only=running_only)):
        rows.append(BookRow(loan_id, name, email, product, LoanState(state).value, code, principal, Decimal(left),
                            Decimal(overdue), (on - oldest).days if oldest else 0, disbursed))
    return rows


@dataclass(frozen=True)
class Bucket:
    label: str
    loans: int
    outstanding_principal: Decimal
    overdue_amount: Decimal


@dataclass(frozen=True)
class Portfolio:
    currency: str
    loans: int
    outstanding_principal: Decimal
    par: dict[int, Decimal]
    buckets: list[Bucket]


def _percent(part: Decimal, whole: Decimal) -> Decimal:
    return (part * 100 / whole).quantize(Decimal("0.01")) if whole else Decimal("0.00")


def portfolio(officer: User, on: date | None = None) -> list[Portfolio]:
    """PAR 1/30/90 and the aging buckets of the running loans, per currency."""
    rows = loan_book(officer, on, running_only=True)
    result = []
    for code in sorted({r.currency for r in rows}):
        mine = [r for r in rows if r.currency == code]
        total = sum((r.outstanding_principal for r in mine), ZERO)
        par = {n: _percent(sum((r.outstanding_principal for r in mine if r.days_in_arrears >= max(n, 1)), ZERO),
                           total) for n in (1, 30, 90)}
        buckets = []
        for label, low, high in BUCKETS:
            inside = [r for r in mine if r.days_in_arrears >= low and (high is None or r.days_in_arrears <= high)]
            buckets.append(Bucket(label, len(inside), sum((r.outstanding_principal for r in inside), ZERO),
                                  sum((r.overdue_amount for r in inside), ZERO)))
        result.append(Portfolio(code, len(mine), total, par, buckets))
    return result


def collections(officer: User, on: date | None = None) -> list[BookRow]:
    """Running loans in arrears, longest first: whom to call today."""
    rows = [r for r in loan_book(officer, on, running_only=True) if r.days_in_arrears > 0]
    return sorted(rows, key=lambda r: (-r.days_in_arrears, -r.overdue_amount))


CSV_COLUMNS = ("loan_id", "borrower", "email", "product", "state", "currency", "principal", "outstanding_principal",
               "overdue_amount", "days_in_arrears", "disbursed_on")


def _cents(amount: Decimal, code: str) -> str:
    return str(amount.quantize(currency(code).quantum))


def book_csv(officer: User, on: date | None = None) -> str:
    """The loan book as CSV text (formula-safe cells)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in loan_book(officer, on):
        writer.writerow([csv_safe(v) for v in (r.loan_id, r.borrower_name, r.borrower_email, r.product, r.state,
                                               r.currency, _cents(r.principal, r.currency),
                                               _cents(r.outstanding_principal, r.currency),
                                               _cents(r.overdue_amount, r.currency), r.days_in_arrears,
                                               r.disbursed_on)])
    return out.getvalue()


@dataclass(frozen=True)
class OfficerLoanView:
    detail: object  # queries.LoanDetail
    borrower: User
    assessment: LoanAssessment | None
    #: Above ``LENDING_FOUR_EYES_ABOVE``: two officers approve.
    needs_two: bool
    four_eyes_above: Decimal
    approved_by: User | None
    confirmed_by: User | None


def loan_view(officer: User, loan_id) -> OfficerLoanView:
    """One loan as an officer sees it: the student's page's facts, the borrower, the assessment
    and who approved it (four eyes)."""
    from portal.errors import NotFound
    from portal.money.lending import queries

    _require_viewer(officer)
    loan = db.session.get(Loan, loan_id)
    if loan is None:
        raise NotFound("No such loan.")
    borrower = db.session.get(User, loan.user_id)
    judged = db.session.scalars(select(LoanAssessment).where(LoanAssessment.loan_id == loan.id)
                                .order_by(LoanAssessment.created_at.desc()).limit(1)).first()
    people = {u.id: u for u in db.session.scalars(select(User).where(
        User.id.in_([x for x in (loan.approved_by_id, loan.confirmed_by_id) if x])))}
    above = services.four_eyes_above()
    return OfficerLoanView(queries.loan_detail(borrower, loan.id), borrower, judged, loan.principal > above, above,
                           people.get(loan.approved_by_id), people.get(loan.confirmed_by_id))
