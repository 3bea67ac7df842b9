"""The states of loans and instalments and how they may change, in one place.

``LOAN_TRANSITIONS`` and ``INSTALMENT_TRANSITIONS`` list every allowed change; ``move_loan`` and
``move_instalment`` raise ``ForbiddenTransition`` for any other (a stale page, a double click
after the loan moved on, or a bug: never applied).

A loan is ``submitted``, then ``approved`` (or ``rejected``, or ``withdrawn`` by the student),
then ``active`` once disbursed; it ends ``closed`` (repaid) or ``written_off``. A restructure
makes it ``restructured``: still running, under a new schedule, so it is repaid and written off
like an active loan. An instalment is ``due``; a part payment makes it ``partially_paid``; the
daily job makes an unpaid one past its date ``overdue``; it ends ``paid``.
"""

from __future__ import annotations

from portal.errors import Conflict
from portal.money.lending.models import InstalmentState, LoanState

L = LoanState
LOAN_TRANSITIONS: dict[LoanState, frozenset[LoanState]] = {
    L.SUBMITTED: frozenset({L.APPROVED, L.REJECTED, L.WITHDRAWN}),
    L.APPROVED: frozenset({L.ACTIVE, L.REJECTED, L.WITHDRAWN}),
    L.ACTIVE: frozenset({L.CLOSED, L.WRITTEN_OFF, L.RESTRUCTURED}),
    L.RESTRUCTURED: frozenset({L.CLOSED, L.WRITTEN_OFF, L.RESTRUCTURED}),
    L.CLOSED: frozenset(),
    L.WRITTEN_OFF: frozenset(),
    L.REJECTED: frozenset(),
    L.WITHDRAWN: frozenset(),
}

#: Loans being repaid.
RUNNING = frozenset({L.ACTIVE, L.RESTRUCTURED})
#: Applications not decided or not paid out yet (one per student at a time).
OPEN = frozenset({L.SUBMITTED, L.APPROVED})

I = InstalmentState  # noqa: E741 - the table reads best with short names
INSTALMENT_TRANSITIONS: dict[InstalmentState, frozenset[InstalmentState]] = {
    I.DUE: frozenset({I.PARTIALLY_PAID, I.PAID, I.OVERDUE}),
    I.PARTIALLY_PAID: frozenset({I.PAID, I.OVERDUE}),
    I.OVERDUE: frozenset({I.PAID}),
    I.PAID: frozenset(),
}


class ForbiddenTransition(Conflict):
    """A state change the table does not allow."""


def can_move_loan(current: LoanState, to: LoanState) -> bool:
    return LoanState(to) in LOAN_TRANSITIONS[LoanState(current)]


def move_loan(loan, to: LoanState) -> LoanState:
    """Set ``loan.state`` to ``to`` or raise ``ForbiddenTransition``; returns the previous state."""
    current, to = LoanState(loan.state), LoanState(to)
    if not can_move_loan(current, to):
        raise ForbiddenTransition(f"A loan that is {current.label.lower()} cannot become {to.label.lower()}.")
    loan.state = to
    return current


def move_instalment(instalment, to: InstalmentState) -> None:
    """Set an instalment's state; staying where it is (an overdue one paid in part) is no move."""
    current, to = InstalmentState(instalment.state), InstalmentState(to)
    if current == to:
        return
    if to not in INSTALMENT_TRANSITIONS[current]:
        raise ForbiddenTransition(f"An instalment that is {current.label.lower()} cannot become {to.label.lower()}.")
    instalment.state = to
